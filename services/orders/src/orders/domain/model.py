"""Orders domain: an order, its lines and its lifecycle. Plain Python, no framework.

    PENDING --saga completed--> APPROVED
    PENDING --saga compensated--> REJECTED (with the failure's reason)
    PENDING --cancel requested--> PENDING (cancel_requested) --saga completed--> CANCELLED
                                                            \\--saga compensated--> REJECTED
    APPROVED --cancel requested--> APPROVED (cancel_requested) --shipment cancelled--> CANCELLED
                                                 \\--carrier had dispatched--> APPROVED
                                                     (cancel refused: reason already_dispatched)

A customer's cancel of a PENDING order is not applied at once: the saga is left to finish
(every step it started is then known), and what it did is undone in one go. An APPROVED
order can be cancelled until its parcel is dispatched: shipping decides (it alone knows
whether the carrier has taken the parcel), and only once it has cancelled the shipment are
the payment refunded and the units put back. REJECTED and CANCELLED are terminal; APPROVED
is terminal for the saga (only a customer's cancel moves it on).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from chassis.clock import utc_now

from orders.domain.commands import PlaceOrder

PENDING, APPROVED, REJECTED, CANCELLED = "PENDING", "APPROVED", "REJECTED", "CANCELLED"
STATUSES = (PENDING, APPROVED, REJECTED, CANCELLED)
TERMINAL = frozenset({APPROVED, REJECTED, CANCELLED})
CURRENCY = "KRW"
CANCELLED_BY_CUSTOMER = "cancelled_by_customer"
ALREADY_DISPATCHED = "already_dispatched"  # why a cancel of an APPROVED order was refused
MAX_QUANTITY = 100
MAX_LINES = 50


class OrderError(ValueError):
    """A rule of ordering was broken; ``reason`` is the machine-readable cause."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class OrderLine:
    product_id: str
    sku: str
    name: str
    quantity: int
    unit_price: Decimal

    @property
    def subtotal(self) -> Decimal:
        return self.unit_price * self.quantity


def format_amount(amount: Decimal) -> str:
    """A KRW amount as its decimal string: KRW has no minor unit ("12900", never "12900.00")."""
    return str(amount.quantize(Decimal(1)))


def total_of(lines: Iterable[OrderLine]) -> Decimal:
    return sum((line.subtotal for line in lines), Decimal(0))


def check_items(items: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """The requested (product id, quantity) pairs, or OrderError when they break a rule."""
    found = list(items)
    if not 1 <= len(found) <= MAX_LINES:
        raise OrderError("invalid_items", f"an order has 1-{MAX_LINES} items")
    ids = [product_id for product_id, _ in found]
    if len(set(ids)) != len(ids):
        raise OrderError("duplicate_product", "each product may appear once")
    for product_id, quantity in found:
        if not 1 <= quantity <= MAX_QUANTITY:
            raise OrderError("invalid_quantity",
                             f"{product_id}: quantity must be 1-{MAX_QUANTITY}")
    return found


def card_fingerprint(card_number: str, key: bytes | None) -> str:
    """How a card enters an order's fingerprint: an HMAC-SHA256 of the number under a secret
    key (a stored hash of a card number alone is reversed by trying the few million numbers
    that share its first six and last four digits); without a key, only its length and last
    four digits, which is coarser but holds nothing derived from the rest of the number."""
    if key is None:
        return f"len-last4:{len(card_number)}:{card_number[-4:]}"
    return "hmac:" + hmac.new(key, card_number.encode(), hashlib.sha256).hexdigest()


def request_fingerprint(command: PlaceOrder, card_key: bytes | None = None) -> str:
    """A stable hash of an order request, to tell a retry from another request that reuses
    its idempotency key. Items are compared as a set (their order does not matter); the
    payment as its payment method id, or its card as ``card_fingerprint`` (never the number
    itself). The canonical form is the one hashed when orders were placed from a dict: a
    key stored then must match its retry now."""
    items = sorted(command.items, key=lambda i: i.product_id)
    payment = command.payment
    if payment.payment_method_id:
        paid_with = "payment_method:" + payment.payment_method_id
    else:
        paid_with = "card:" + card_fingerprint(str(payment.card_number), card_key)
    canonical = {"items": [{"product_id": i.product_id, "quantity": i.quantity} for i in items],
                 "shipping_address_id": command.shipping_address_id,
                 "payment": paid_with}
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(slots=True)
class Order:
    id: str
    customer_id: str
    status: str
    lines: tuple[OrderLine, ...]
    total: Decimal
    currency: str = CURRENCY
    customer_email: str | None = None
    shipping_address_id: str = ""
    reason: str | None = None
    cancel_requested: bool = False
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)

    @classmethod
    def place(cls, order_id: str, customer_id: str, lines: Iterable[OrderLine], *,
              shipping_address_id: str, customer_email: str | None = None,
              now: datetime | None = None) -> Order:
        placed = tuple(lines)
        if not placed:
            raise OrderError("invalid_items", "an order needs at least one line")
        now = now or utc_now()
        return cls(order_id, customer_id, PENDING, placed, total_of(placed),
                   customer_email=customer_email, shipping_address_id=shipping_address_id,
                   created_at=now, updated_at=now)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def approve(self, now: datetime) -> None:
        self._move(APPROVED, now)

    def reject(self, reason: str, now: datetime) -> None:
        self._move(REJECTED, now)
        self.reason = reason

    def cancel(self, now: datetime) -> None:
        """Apply a requested cancel: from PENDING when the saga ends, from APPROVED once
        shipping has cancelled the shipment."""
        if self.status == APPROVED and self.cancel_requested:
            self.status, self.updated_at = CANCELLED, now
        else:
            self._move(CANCELLED, now)
        self.reason = CANCELLED_BY_CUSTOMER

    def refuse_cancel(self, reason: str, now: datetime) -> bool:
        """Shipping could not cancel (the parcel has left): the order stays APPROVED and
        says why. False when no cancel was pending (a repeated refusal)."""
        if self.status != APPROVED or not self.cancel_requested:
            return False
        self.cancel_requested, self.reason, self.updated_at = False, reason, now
        return True

    def request_cancel(self, now: datetime) -> bool:
        """Ask to cancel: allowed while PENDING (applied when the saga ends) or APPROVED
        (applied when shipping has cancelled the shipment); True when this call changed
        something, False for a repeat. OrderError once REJECTED or CANCELLED, or when a
        cancel of this APPROVED order was refused already."""
        if self.status not in (PENDING, APPROVED):
            raise OrderError("not_cancellable", f"an order {self.status} cannot be cancelled")
        if self.status == APPROVED and self.reason == ALREADY_DISPATCHED:
            raise OrderError("not_cancellable", "the order has been dispatched already")
        if self.cancel_requested:
            return False
        self.cancel_requested, self.updated_at = True, now
        return True

    def _move(self, status: str, now: datetime) -> None:
        if self.status != PENDING:
            raise OrderError("already_final", f"order {self.id} is {self.status} already")
        self.status, self.updated_at = status, now


def rejection_reason(failure: dict[str, Any] | None) -> str:
    """The order's reason from the saga's failure record: the replying service's reason
    ("card_declined", "insufficient_stock", ...), or "<step>_timed_out"."""
    if not failure:
        return "unknown"
    reason = str(failure.get("reason") or "unknown")
    if reason == "timed_out":
        return f"{failure.get('step', 'saga')}_timed_out"
    return reason
