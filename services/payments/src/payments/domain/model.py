"""Payments domain: one payment intent per ``payment_id`` and its ledger. Plain Python.

A payment's life (every arrow is one provider call, recorded as one ledger entry):

    REQUESTED --authorize ok------> AUTHORIZED --capture--> CAPTURED --refund--> REFUNDED
              \\--authorize refused-> DECLINED     \\--void----> VOIDED
    (none) --void---------------> VOIDED   (a tombstone: a late authorize is refused)

DECLINED, VOIDED and REFUNDED are terminal. A command that finds the payment already where it
would take it changes nothing (idempotent per payment); one that finds it anywhere else is an
invalid transition (``InvalidTransition``), announced as PaymentFailed.

Ledger: an ``authorize`` entry holds the amount, ``capture`` takes it, ``void`` releases a
hold, ``refund`` gives a capture back. At most one entry of each kind per payment, so per order
``captured - refunded`` is either 0 or the order's total.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

from chassis.clock import utc_now

REQUESTED, AUTHORIZED, DECLINED = "requested", "authorized", "declined"
CAPTURED, VOIDED, REFUNDED = "captured", "voided", "refunded"
STATUSES = (REQUESTED, AUTHORIZED, DECLINED, CAPTURED, VOIDED, REFUNDED)
TERMINAL = frozenset({DECLINED, VOIDED, REFUNDED})

AUTHORIZE, CAPTURE, VOID, REFUND = "authorize", "capture", "void", "refund"
ENTRY_KINDS = (AUTHORIZE, CAPTURE, VOID, REFUND)

# Decline reasons of our own (the provider's come through as it sends them).
VOIDED_BEFORE_AUTHORIZE = "voided_before_authorize"
# AuthorizePayment named a payment method that is not the order's customer's (or none).
PAYMENT_METHOD_NOT_FOUND = "payment_method_not_found"
# AuthorizePayment.v1 carried a card number that is not 12-19 ASCII digits passing Luhn.
INVALID_CARD = "invalid_card"
PAYMENT_NOT_FOUND = "payment_not_found"
PROVIDER_TIMEOUT = "provider_timeout"

MAX_AMOUNT = Decimal("1000000000000")


class PaymentError(ValueError):
    """A rule of payments was broken."""


class InvalidTransition(PaymentError):
    """The payment is not in a state this operation applies to."""

    def __init__(self, operation: str, status: str) -> None:
        super().__init__(f"cannot {operation} a {status} payment")
        self.operation = operation
        self.status = status

    @property
    def reason(self) -> str:
        return f"payment_{self.status}"


def parse_amount(text: str) -> Decimal:
    """A positive amount with at most 2 decimals (KRW has none; others have cents)."""
    try:
        amount = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise PaymentError(f"not an amount: {text!r}") from None
    if not amount.is_finite() or amount <= 0 or amount >= MAX_AMOUNT:
        raise PaymentError(f"amount out of range: {text!r}")
    if amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise PaymentError(f"too many decimals: {text!r}")
    return amount


def money_text(amount: Decimal) -> str:
    """One spelling per amount, whether it came from a command or from the database:
    whole amounts without decimals ("15000"), others with two ("99.50")."""
    cents = amount.quantize(Decimal("0.01"))
    return str(cents.quantize(Decimal(1))) if cents == cents.to_integral_value() else str(cents)


@dataclass(frozen=True, slots=True)
class PaymentMethod:
    """A customer's card as payments knows it: the provider's token, never the number."""

    id: str
    customer_id: str
    last4: str
    brand: str
    created_at: datetime = field(default_factory=utc_now)

    def usable_by(self, customer_id: str | None) -> bool:
        return customer_id is not None and customer_id == self.customer_id


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    payment_id: str
    order_id: str
    kind: str
    amount: Decimal
    currency: str
    created_at: datetime = field(default_factory=utc_now)


@dataclass(slots=True)
class Payment:
    payment_id: str
    order_id: str
    status: str
    amount: Decimal | None = None
    currency: str | None = None
    card_last4: str | None = None
    provider_ref: str | None = None
    reason: str | None = None
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)
    payment_method_id: str | None = None

    @classmethod
    def request(cls, payment_id: str, order_id: str, amount: str, currency: str, *,
                card_last4: str, payment_method_id: str, now: datetime) -> Payment:
        return cls(payment_id, order_id, REQUESTED, parse_amount(amount), currency,
                   card_last4, created_at=now, updated_at=now,
                   payment_method_id=payment_method_id)

    @classmethod
    def void_tombstone(cls, payment_id: str, order_id: str, *, reason: str | None,
                       now: datetime) -> Payment:
        """A void that overtook its authorize: remembered so the late authorize is refused."""
        return cls(payment_id, order_id, VOIDED, reason=reason or VOIDED_BEFORE_AUTHORIZE,
                   created_at=now, updated_at=now)

    def _entry(self, kind: str, now: datetime) -> LedgerEntry:
        assert self.amount is not None and self.currency is not None
        return LedgerEntry(self.payment_id, self.order_id, kind, self.amount, self.currency, now)

    def _move(self, operation: str, source: str, target: str, now: datetime) -> LedgerEntry:
        if self.status != source:
            raise InvalidTransition(operation, self.status)
        self.status, self.updated_at = target, now
        return self._entry(operation, now)

    def authorized(self, provider_ref: str, *, now: datetime) -> LedgerEntry:
        entry = self._move(AUTHORIZE, REQUESTED, AUTHORIZED, now)
        self.provider_ref = provider_ref
        return entry

    def declined(self, reason: str, *, provider_ref: str | None, now: datetime) -> None:
        if self.status != REQUESTED:
            raise InvalidTransition(AUTHORIZE, self.status)
        self.status, self.reason, self.provider_ref, self.updated_at = (
            DECLINED, reason, provider_ref, now)

    def captured(self, *, now: datetime) -> LedgerEntry:
        return self._move(CAPTURE, AUTHORIZED, CAPTURED, now)

    def voided(self, reason: str | None, *, now: datetime) -> LedgerEntry:
        entry = self._move(VOID, AUTHORIZED, VOIDED, now)
        self.reason = reason
        return entry

    def refunded(self, reason: str | None, *, now: datetime) -> LedgerEntry:
        entry = self._move(REFUND, CAPTURED, REFUNDED, now)
        self.reason = reason
        return entry


@dataclass(frozen=True, slots=True)
class Balance:
    """What the ledger says about one order's money."""

    authorized: Decimal
    captured: Decimal
    voided: Decimal
    refunded: Decimal

    @property
    def held(self) -> Decimal:
        """Authorized and neither captured nor released yet."""
        return self.authorized - self.captured - self.voided

    @property
    def net_captured(self) -> Decimal:
        return self.captured - self.refunded


def balance(entries: Iterable[LedgerEntry]) -> Balance:
    """Totals per kind; raises PaymentError when the ledger breaks an invariant: at most one
    entry of each kind per payment, at most one capture per order, a capture, void or refund
    only against what was authorized or captured before."""
    totals = dict.fromkeys(ENTRY_KINDS, Decimal(0))
    seen: set[tuple[str, str]] = set()
    captures = 0
    for e in entries:
        if e.kind not in totals:
            raise PaymentError(f"unknown ledger entry kind {e.kind!r}")
        if (e.payment_id, e.kind) in seen:
            raise PaymentError(f"{e.payment_id}: two {e.kind} entries")
        seen.add((e.payment_id, e.kind))
        totals[e.kind] += e.amount
        captures += e.kind == CAPTURE
    result = Balance(totals[AUTHORIZE], totals[CAPTURE], totals[VOID], totals[REFUND])
    if captures > 1:
        raise PaymentError("more than one capture for an order")
    if result.held < 0 or result.net_captured < 0:
        raise PaymentError("ledger takes or gives back more than was authorized or captured")
    return result
