"""Translate integration events (contracts) into ``Change``s of the order view.

Pure functions over a parsed contract and the time it occurred. A value the view cannot
hold (an id over 200 characters, an amount that is not a non-negative decimal, a currency
that is not three capitals, an unknown shipment status) makes the message poison: retried,
then dead-lettered, and nothing is written.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation

from chassis.messaging.envelope import PoisonMessage
from contracts.orders.v1 import OrderApproved, OrderCancelled, OrderPlaced, OrderRejected
from contracts.payments.v1 import (
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    PaymentRefunded,
    PaymentVoided,
)
from contracts.shipping.v1 import (
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentCreationFailed,
    ShipmentStatusChanged,
)

from order_history.domain.model import (
    APPROVED,
    AUTHORIZED,
    CANCELLED,
    CAPTURED,
    CREATED,
    DECLINED,
    PENDING,
    REFUNDED,
    REJECTED,
    SHIPMENT_CANCELLED,
    SHIPMENT_FAILED,
    SHIPMENT_RANK,
    VOIDED,
    Change,
)

ID_LENGTH = 200
TRACKING_LENGTH = 64
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def _id(value: str, what: str) -> str:
    if not 0 < len(value) <= ID_LENGTH:
        raise PoisonMessage(f"{what} must be 1-{ID_LENGTH} characters")
    return value


def _money(value: str, what: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise PoisonMessage(f"{what} is not a decimal") from None
    if not amount.is_finite() or amount < 0:
        raise PoisonMessage(f"{what} must be a non-negative decimal")
    return amount


def _currency(value: str) -> str:
    if not _CURRENCY.match(value):
        raise PoisonMessage("currency must be three capital letters")
    return value


def _tracking(value: str) -> str:
    if not 0 < len(value) <= TRACKING_LENGTH:
        raise PoisonMessage(f"tracking number must be 1-{TRACKING_LENGTH} characters")
    return value


# -- orders --------------------------------------------------------------------------------

def order_placed(e: OrderPlaced, at: datetime) -> Change:
    return Change(order_id=_id(e.order_id, "order_id"), occurred_at=at,
                  customer_id=_id(e.customer_id, "customer_id"), status=PENDING,
                  total=_money(e.total, "total"), currency=_currency(e.currency),
                  lines=[line.model_dump(mode="json") for line in e.lines], placed=True)


def order_approved(e: OrderApproved, at: datetime) -> Change:
    """An approval means the saga captured the payment and created the shipment: the view
    takes both from it, not from the steps' own events, which its consumers no longer read
    (ADR 0039). An approval published before the event carried them still tells the capture
    (the whole total); its tracking number came with ShipmentCreated, which a rebuild
    replays."""
    total = _money(e.total, "total")
    captured = total if e.amount_captured is None else _money(e.amount_captured,
                                                              "amount_captured")
    return Change(order_id=_id(e.order_id, "order_id"), occurred_at=at,
                  customer_id=_id(e.customer_id, "customer_id"), status=APPROVED,
                  total=total, currency=_currency(e.currency),
                  payment_status=CAPTURED, amount_captured=captured,
                  shipment_status=CREATED,
                  tracking_number=(None if e.tracking_number is None
                                   else _tracking(e.tracking_number)))


def order_rejected(e: OrderRejected, at: datetime) -> Change:
    return Change(order_id=_id(e.order_id, "order_id"), occurred_at=at,
                  customer_id=_id(e.customer_id, "customer_id"), status=REJECTED,
                  reason=e.reason)


def order_cancelled(e: OrderCancelled, at: datetime) -> Change:
    return Change(order_id=_id(e.order_id, "order_id"), occurred_at=at,
                  customer_id=_id(e.customer_id, "customer_id"), status=CANCELLED,
                  reason=e.reason)


# -- payments (correlated by the order_id in the payload) ---------------------------------

def payment_authorized(e: PaymentAuthorized, at: datetime) -> Change:
    _money(e.amount, "amount")
    return Change(order_id=_id(e.order_id, "order_id"), occurred_at=at,
                  payment_status=AUTHORIZED, currency=_currency(e.currency))


def payment_declined(e: PaymentDeclined, at: datetime) -> Change:
    return Change(order_id=_id(e.order_id, "order_id"), occurred_at=at,
                  payment_status=DECLINED)


def payment_captured(e: PaymentCaptured, at: datetime) -> Change:
    return Change(order_id=_id(e.order_id, "order_id"), occurred_at=at,
                  payment_status=CAPTURED, amount_captured=_money(e.amount, "amount"),
                  currency=_currency(e.currency))


def payment_voided(e: PaymentVoided, at: datetime) -> Change:
    return Change(order_id=_id(e.order_id, "order_id"), occurred_at=at,
                  payment_status=VOIDED)


def payment_refunded(e: PaymentRefunded, at: datetime) -> Change:
    return Change(order_id=_id(e.order_id, "order_id"), occurred_at=at,
                  payment_status=REFUNDED, amount_refunded=_money(e.amount, "amount"),
                  currency=_currency(e.currency))


def payment_failed(e: PaymentFailed, at: datetime) -> Change:
    # A capture, void or refund refused in the payment's state: the payment did not change.
    return Change(order_id=_id(e.order_id, "order_id"), occurred_at=at)


# -- shipping --------------------------------------------------------------------------------

def shipment_created(e: ShipmentCreated, at: datetime) -> Change:
    return Change(order_id=_id(e.order_id, "order_id"), occurred_at=at,
                  customer_id=_id(e.customer_id, "customer_id"), shipment_status=CREATED,
                  tracking_number=_tracking(e.tracking_number))


def shipment_status_changed(e: ShipmentStatusChanged, at: datetime) -> Change:
    if e.status not in SHIPMENT_RANK:
        raise PoisonMessage("unknown shipment status")
    return Change(order_id=_id(e.order_id, "order_id"), occurred_at=at,
                  customer_id=_id(e.customer_id, "customer_id"), shipment_status=e.status,
                  tracking_number=_tracking(e.tracking_number))


def shipment_creation_failed(e: ShipmentCreationFailed, at: datetime) -> Change:
    return Change(order_id=_id(e.order_id, "order_id"), occurred_at=at,
                  shipment_status=SHIPMENT_FAILED)


def shipment_cancelled(e: ShipmentCancelled, at: datetime) -> Change:
    return Change(order_id=_id(e.order_id, "order_id"), occurred_at=at,
                  shipment_status=SHIPMENT_CANCELLED)
