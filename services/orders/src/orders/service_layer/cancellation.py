"""The cancel of an APPROVED order, after its saga (a PENDING order's cancel is settled when
its saga ends: ``saga.settle``).

The cancel goes through shipping first (``ask_to_cancel_shipment``): on ShipmentCancelled
the payment is refunded and the units restocked (+ OrderCancelled); on
ShipmentCancellationRefused (the carrier has the parcel) the order stays APPROVED. Each
step is written to the saga's history, where an operator reads the order's whole story.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import structlog
from chassis.messaging.consumer import UnmatchedMessage, dropped
from chassis.messaging.envelope import Envelope, parse_payload
from chassis.messaging.outbox import stage
from chassis.saga import record_event
from contracts.shipping.v1 import ShipmentCancellationRefused, ShipmentCancelled
from sqlalchemy.ext.asyncio import AsyncSession

from orders.adapters.repository import OrdersRepository
from orders.domain.model import ALREADY_DISPATCHED, APPROVED, CANCELLED_BY_CUSTOMER, Order
from orders.service_layer import events
from orders.service_layer.saga import UNDO_APPROVED, cancel_shipment

log = structlog.get_logger("orders")

Handler = Callable[[AsyncSession, Envelope], Awaitable[None]]


def handlers(clock: Callable[[], datetime]) -> dict[str, Handler]:
    """Handlers of shipping's answers to an APPROVED order's cancel, by message type."""
    async def cancelled(session: AsyncSession, envelope: Envelope) -> None:
        await shipment_cancelled(session, envelope, clock())

    async def refused(session: AsyncSession, envelope: Envelope) -> None:
        await shipment_cancellation_refused(session, envelope, clock())

    return {ShipmentCancelled.message_type(): cancelled,
            ShipmentCancellationRefused.message_type(): refused}


def _order_data(order: Order) -> dict[str, Any]:
    return {"order_id": order.id, "cancel_reason": CANCELLED_BY_CUSTOMER}


async def ask_to_cancel_shipment(session: AsyncSession, order: Order, now: datetime) -> None:
    """Stage CancelShipment for an APPROVED order whose customer asked to cancel."""
    sent = (await stage(session, cancel_shipment(_order_data(order)),
                        correlation_id=order.id)).message_type
    await record_event(session, uuid.UUID(order.id), "cancel_requested", at=now,
                       detail={"commands_sent": [sent]})


async def _approved_cancelling(session: AsyncSession, order_id: str) -> Order | None:
    """The order, locked, if it is APPROVED with a cancel waiting for shipping's answer.
    Shipping also answers the saga's own compensations (a rejected order): those are none
    of this path's business (logged and counted by the consumer). An answer about an order
    that does not exist here is dead-lettered, like a reply for an unknown saga."""
    try:
        uuid.UUID(order_id)
        order = await OrdersRepository(session).get(order_id, for_update=True)
    except ValueError:
        order = None
    if order is None:
        raise UnmatchedMessage("unknown_order", f"shipping answered about order {order_id!r}, "
                               "which does not exist here")
    if order.status != APPROVED or not order.cancel_requested:
        # Normal: the answer to a compensation, or a repeat after the cancel was settled.
        dropped("no_cancel_awaited", f"order {order_id} is {order.status}, no cancel awaits "
                "shipping's answer")
        return None
    return order


async def shipment_cancelled(session: AsyncSession, envelope: Envelope, now: datetime) -> None:
    event = parse_payload(ShipmentCancelled, envelope)
    order = await _approved_cancelling(session, event.order_id)
    if order is None:
        return
    causation = str(envelope.message_id)
    data = _order_data(order)
    sent = [(await stage(session, build(data), correlation_id=order.id,
                         causation_id=causation)).message_type for build in UNDO_APPROVED]
    order.cancel(now)
    await OrdersRepository(session).save(order)
    await events.order_cancelled(session, order)
    await record_event(session, uuid.UUID(order.id), "order_cancelled", at=now,
                       detail={"reason": order.reason, "commands_sent": sent})
    log.info("order_cancelled_after_approval", order_id=order.id)


async def shipment_cancellation_refused(session: AsyncSession, envelope: Envelope,
                                        now: datetime) -> None:
    event = parse_payload(ShipmentCancellationRefused, envelope)
    order = await _approved_cancelling(session, event.order_id)
    if order is None or not order.refuse_cancel(ALREADY_DISPATCHED, now):
        return
    await OrdersRepository(session).save(order)
    await record_event(session, uuid.UUID(order.id), "cancel_refused", at=now,
                       detail={"reason": order.reason, "shipment_status": event.status})
    log.info("order_cancel_refused", order_id=order.id, reason=order.reason)
