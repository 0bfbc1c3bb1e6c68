"""Payments' commands, version 2: a card travels as a payment method token, never as a number.

``AuthorizePayment.v2`` replaces ``AuthorizePayment.v1`` (which carried ``card_number``): the
order saga sends the token payments issued for the customer's card (``payment_method_id``)
and the card's last four digits, on the same subject. Payments checks that the payment method
belongs to ``customer_id``. It still handles v1 messages already in flight (see ADR 0012).
"""

from __future__ import annotations

from typing import ClassVar

from contracts.payments.v1 import _ByPaymentMethod


class AuthorizePayment(_ByPaymentMethod):
    """Hold the amount on the customer's payment method (a token from payments)."""

    version: ClassVar[int] = 2
