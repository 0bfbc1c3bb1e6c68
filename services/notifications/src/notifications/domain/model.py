"""Notifications, in plain Python: which events become which email, what each email says,
and when a failed send is tried again. No framework, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# One notification per (order, kind); the kinds are the emails a customer can get.
ORDER_PLACED = "order_placed"
ORDER_APPROVED = "order_approved"
ORDER_REJECTED = "order_rejected"
ORDER_CANCELLED = "order_cancelled"
SHIPMENT_DISPATCHED = "shipment_dispatched"
SHIPMENT_DELIVERED = "shipment_delivered"
KINDS = (ORDER_PLACED, ORDER_APPROVED, ORDER_REJECTED, ORDER_CANCELLED, SHIPMENT_DISPATCHED,
         SHIPMENT_DELIVERED)

# The order a customer reads an order's emails in: one is not sent while an email of the
# same order earlier in this sequence is still queued. Kinds that exclude each other share a
# place (an order is approved or rejected; cancelled before dispatch, or dispatched).
SEQUENCE = {ORDER_PLACED: 0, ORDER_APPROVED: 1, ORDER_REJECTED: 1, ORDER_CANCELLED: 2,
            SHIPMENT_DISPATCHED: 2, SHIPMENT_DELIVERED: 3}
# The email each one follows, which must exist before it is sent: its event can come later
# than the next one's (redelivered after a crash, from another stream). An email whose
# predecessor never comes is sent anyway after a while (settings.sender_order_wait_s).
FOLLOWS = {ORDER_APPROVED: ORDER_PLACED, ORDER_REJECTED: ORDER_PLACED,
           ORDER_CANCELLED: ORDER_PLACED, SHIPMENT_DISPATCHED: ORDER_APPROVED,
           SHIPMENT_DELIVERED: SHIPMENT_DISPATCHED}

QUEUED, SENT, FAILED = "queued", "sent", "failed"
STATUSES = (QUEUED, SENT, FAILED)

# Why a notification ended failed without an SMTP attempt.
UNKNOWN_RECIPIENT = "unknown_recipient"

# Shipment statuses worth an email; IN_TRANSIT (and anything newer) sends none.
_SHIPMENT_KINDS = {"DISPATCHED": SHIPMENT_DISPATCHED, "DELIVERED": SHIPMENT_DELIVERED}

# Room for the variable parts of a mail: a reason or id never makes a subject unbounded.
_FIELD_LIMIT = 200


def shipment_kind(status: str) -> str | None:
    """The notification a shipment status asks for, or None (no email)."""
    return _SHIPMENT_KINDS.get(status.upper())


@dataclass(frozen=True, slots=True)
class Facts:
    """What a template may mention; all optional except the order."""

    order_id: str
    total: str | None = None
    currency: str | None = None
    reason: str | None = None
    tracking_number: str | None = None
    items: int | None = None


@dataclass(frozen=True, slots=True)
class Mail:
    subject: str
    body: str


def _clip(value: str | None, fallback: str = "") -> str:
    text = " ".join((value or fallback).split())  # no header injection through newlines
    return text[:_FIELD_LIMIT]


def render(kind: str, facts: Facts) -> Mail:
    """The email for one kind. Raises ValueError for a kind that does not exist."""
    order = _clip(facts.order_id)
    money = f"{_clip(facts.total)} {_clip(facts.currency)}".strip()
    reason = _clip(facts.reason, "no reason given")
    tracking = _clip(facts.tracking_number, "not yet known")
    if kind == ORDER_PLACED:
        items = f"{facts.items} item(s), " if facts.items else ""
        return Mail(f"We received your order {order}",
                    f"Thank you for your order {order} ({items}total {money}).\n"
                    "We are checking stock and payment and will write again shortly.\n")
    if kind == ORDER_APPROVED:
        return Mail(f"Your order {order} is confirmed",
                    f"Good news: your order {order} is confirmed and paid ({money}).\n"
                    "We will tell you when it ships.\n")
    if kind == ORDER_REJECTED:
        return Mail(f"We could not complete your order {order}",
                    f"Sorry, your order {order} could not be completed: {reason}.\n"
                    "You have not been charged.\n")
    if kind == ORDER_CANCELLED:
        return Mail(f"Your order {order} is cancelled",
                    f"Your order {order} has been cancelled ({reason}).\n"
                    "Any payment has been released.\n")
    if kind == SHIPMENT_DISPATCHED:
        return Mail(f"Your order {order} is on its way",
                    f"Your order {order} has been dispatched.\n"
                    f"Tracking number: {tracking}\n")
    if kind == SHIPMENT_DELIVERED:
        return Mail(f"Your order {order} has been delivered",
                    f"Your order {order} has been delivered (tracking number {tracking}).\n"
                    "We hope you enjoy it.\n")
    raise ValueError(f"unknown notification kind {kind!r}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A failed send waits ``base * 2**(attempts-1)`` (capped) before the next try; after
    ``max_attempts`` tries the notification is failed for good."""

    max_attempts: int = 5
    base: timedelta = timedelta(seconds=2)
    cap: timedelta = timedelta(minutes=5)

    def delay(self, attempts: int) -> timedelta:
        return min(self.base * (2 ** max(attempts - 1, 0)), self.cap)

    def gives_up(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


@dataclass(frozen=True, slots=True)
class Notification:
    id: int
    order_id: str
    kind: str
    recipient: str | None
    subject: str
    body: str
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None
