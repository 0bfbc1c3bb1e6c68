"""The order view and the rules that merge what each event knows into it.

Events about one order come from three streams (orders, payments, shipping) and may arrive
in any order, twice, or after a newer one. ``merge`` is therefore written so that the final
view depends only on the *set* of events seen, never on their arrival order:

- each status is kept at the highest rank it has reached (a late older event never sets a
  status back); terminal statuses outrank every other, and ties between two terminal ones are
  broken by a fixed order, so even impossible pairs give one answer;
- facts that never change (customer, lines, total, tracking number) fill a gap once;
- amounts keep their maximum (payments capture and refund the whole amount, so a repeated
  event under a new message id cannot add it twice);
- ``placed_at`` is the earliest OrderPlaced, ``last_event_at`` the latest event.

Plain Python: no framework, no database.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

# Order lifecycle (from the orders service). PENDING first; the three outcomes are final.
PENDING, APPROVED, REJECTED, CANCELLED = "PENDING", "APPROVED", "REJECTED", "CANCELLED"
ORDER_RANK = {PENDING: 0, APPROVED: 1, REJECTED: 2, CANCELLED: 3}

# Payment (from payments): authorized < captured < refunded; voided and declined are final.
AUTHORIZED, CAPTURED, REFUNDED = "AUTHORIZED", "CAPTURED", "REFUNDED"
VOIDED, DECLINED = "VOIDED", "DECLINED"
PAYMENT_RANK = {AUTHORIZED: 0, CAPTURED: 1, REFUNDED: 2, VOIDED: 3, DECLINED: 4}

# Shipment (from shipping): the carrier's route; a failed creation and a cancel are final.
CREATED, DISPATCHED, IN_TRANSIT, DELIVERED = "CREATED", "DISPATCHED", "IN_TRANSIT", "DELIVERED"
SHIPMENT_FAILED, SHIPMENT_CANCELLED = "FAILED", "CANCELLED"
SHIPMENT_RANK = {CREATED: 0, DISPATCHED: 1, IN_TRANSIT: 2, DELIVERED: 3, SHIPMENT_FAILED: 4,
                 SHIPMENT_CANCELLED: 5}

T = TypeVar("T")
Ordered = TypeVar("Ordered", Decimal, datetime, str)


@dataclass(frozen=True)
class Change:
    """What one event tells about one order; ``None`` means "this event does not say"."""

    order_id: str
    occurred_at: datetime
    customer_id: str | None = None
    status: str | None = None
    reason: str | None = None
    total: Decimal | None = None
    currency: str | None = None
    lines: list[dict[str, Any]] | None = None
    placed: bool = False
    payment_status: str | None = None
    amount_captured: Decimal | None = None
    amount_refunded: Decimal | None = None
    shipment_status: str | None = None
    tracking_number: str | None = None


@dataclass(frozen=True)
class OrderView:
    """One row of the read model, as far as the events seen so far tell."""

    order_id: str
    customer_id: str | None = None
    status: str | None = None
    total: Decimal | None = None
    currency: str | None = None
    lines: list[dict[str, Any]] | None = None
    reason: str | None = None
    payment_status: str | None = None
    amount_captured: Decimal | None = None
    amount_refunded: Decimal | None = None
    shipment_status: str | None = None
    tracking_number: str | None = None
    placed_at: datetime | None = None
    last_event_at: datetime | None = None

    @property
    def visible_to_customers(self) -> bool:
        """A row nobody owns yet (only payment events seen) is shown to admins only."""
        return self.customer_id is not None


def ranked(current: str | None, new: str | None, ranks: dict[str, int]) -> str | None:
    """The higher-ranked of two statuses (either may be unknown)."""
    if new is None:
        return current
    if current is None or ranks[new] > ranks[current]:
        return new
    return current


def first_known(current: T | None, new: T | None) -> T | None:
    return current if current is not None else new


def highest(current: Ordered | None, new: Ordered | None) -> Ordered | None:
    if current is None:
        return new
    if new is None:
        return current
    return max(current, new)


def lowest(current: Ordered | None, new: Ordered | None) -> Ordered | None:
    if current is None:
        return new
    if new is None:
        return current
    return min(current, new)


def _reason(view: OrderView, change: Change, status: str | None) -> str | None:
    """The reason belongs to the order status that wins: a newer status brings its own (or
    none); a repeat of the same status keeps a reason, the smallest if repeats disagree."""
    if status != view.status:
        return change.reason
    if change.status == status:
        return lowest(view.reason, change.reason)
    return view.reason


def merge(view: OrderView, change: Change) -> OrderView:
    """The view after ``change``; commutative and idempotent over any set of changes."""
    if change.order_id != view.order_id:
        raise ValueError(f"change for {change.order_id} merged into {view.order_id}")
    status = ranked(view.status, change.status, ORDER_RANK)
    return replace(
        view,
        customer_id=first_known(view.customer_id, change.customer_id),
        status=status,
        reason=_reason(view, change, status),
        total=first_known(view.total, change.total),
        currency=first_known(view.currency, change.currency),
        lines=first_known(view.lines, change.lines),
        payment_status=ranked(view.payment_status, change.payment_status, PAYMENT_RANK),
        amount_captured=highest(view.amount_captured, change.amount_captured),
        amount_refunded=highest(view.amount_refunded, change.amount_refunded),
        shipment_status=ranked(view.shipment_status, change.shipment_status, SHIPMENT_RANK),
        tracking_number=first_known(view.tracking_number, change.tracking_number),
        placed_at=lowest(view.placed_at, change.occurred_at if change.placed else None),
        last_event_at=highest(view.last_event_at, change.occurred_at),
    )


def fold(order_id: str, changes: list[Change]) -> OrderView:
    """The view of one order after all ``changes`` (in the order given)."""
    view = OrderView(order_id)
    for change in changes:
        view = merge(view, change)
    return view
