"""Payments' commands, version 2: a card travels as a payment method token, never as a number.

``AuthorizePayment.v2`` replaces ``AuthorizePayment.v1`` (which carried ``card_number``): the
order saga sends the token payments issued for the customer's card (``payment_method_id``)
and the card's last four digits, on the same subject. Payments checks that the payment method
belongs to ``customer_id``. It still handles v1 messages already in flight (see ADR 0012).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from contracts.payments.v1 import Id, _PaymentsCommand


class AuthorizePayment(_PaymentsCommand):
    """Hold the amount on the customer's payment method (a token from payments)."""

    version: ClassVar[int] = 2

    payment_id: str = Id
    order_id: str = Id
    customer_id: str = Id
    amount: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    payment_method_id: str = Field(min_length=1, max_length=200)
    card_last4: str = Field(pattern=r"^[0-9]{4}$")
