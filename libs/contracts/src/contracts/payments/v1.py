"""Payments' commands (PAYMENTS_COMMANDS, a work queue) and events (PAYMENTS_EVENTS).

Every command is idempotent per ``payment_id`` (one payment intent per order): sending it
again has the effect of once and publishes the same outcome again. Money is a decimal string
plus an ISO 4217 currency.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from contracts.base import Command, Event

Id = Field(min_length=1, max_length=200)


class _PaymentsCommand(Command):
    owner: ClassVar[str] = "payments"


class _PaymentsEvent(Event):
    owner: ClassVar[str] = "payments"


class AuthorizePayment(_PaymentsCommand):
    """Hold the amount on the card. Superseded by ``AuthorizePayment.v2`` (a payment method
    token instead of the card number): nothing sends v1 any more, and payments still handles
    one already in flight by tokenizing its card on receipt. Events carry the last four
    digits only."""

    payment_id: str = Id
    order_id: str = Id
    amount: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    card_number: str = Field(min_length=12, max_length=19, pattern=r"^\d+$")


class CapturePayment(_PaymentsCommand):
    payment_id: str = Id
    order_id: str = Id


class _ByPaymentMethod(_PaymentsCommand):
    """A command that charges the customer's payment method (a token from payments, which
    must belong to ``customer_id``): ``AuthorizePayment.v2`` and ``ChargePayment``."""

    payment_id: str = Id
    order_id: str = Id
    customer_id: str = Id
    amount: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    payment_method_id: str = Field(min_length=1, max_length=200)
    card_last4: str = Field(pattern=r"^[0-9]{4}$")


class ChargePayment(_ByPaymentMethod):
    """Authorize and capture the amount in one step (ADR 0051): the order saga's payment,
    sent once the stock is reserved. Answered by PaymentCaptured, or PaymentDeclined (an
    authorization the provider would not capture is voided first).
    ``payment_method_id`` is the customer's token from payments, as in AuthorizePayment.v2."""


class VoidPayment(_PaymentsCommand):
    """Release what the payment holds: an authorization is voided, a captured amount (a
    ChargePayment's) refunded; a payment never seen is refused from then on (a tombstone)."""

    payment_id: str = Id
    order_id: str = Id
    reason: str | None = None


class RefundPayment(_PaymentsCommand):
    """Give back a captured amount (all of it: partial refunds are not offered yet)."""

    payment_id: str = Id
    order_id: str = Id
    reason: str | None = None


class PaymentAuthorized(_PaymentsEvent):
    payment_id: str
    order_id: str
    amount: str
    currency: str
    card_last4: str


class PaymentDeclined(_PaymentsEvent):
    payment_id: str
    order_id: str
    reason: str  # "card_declined" | "insufficient_funds" | "provider_unavailable" | ...


class PaymentCaptured(_PaymentsEvent):
    payment_id: str
    order_id: str
    amount: str
    currency: str


class PaymentVoided(_PaymentsEvent):
    payment_id: str
    order_id: str


class PaymentRefunded(_PaymentsEvent):
    payment_id: str
    order_id: str
    amount: str
    currency: str


class PaymentFailed(_PaymentsEvent):
    """A capture, void or refund that cannot be done in the payment's state."""

    payment_id: str
    order_id: str
    operation: str
    reason: str
