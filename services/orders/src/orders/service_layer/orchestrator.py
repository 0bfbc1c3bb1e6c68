"""The order saga's engine, and how a finished saga settles its order.

The chassis engine has no completion hook, so ``OrderSagaEngine`` adds one where every
saga transition happens: after ``handle_reply`` (the reply consumer's transaction) and after
``tick`` (the reconciler's transaction, where a step that timed out is compensated). In both,
an order still PENDING whose saga has ended is settled in that same transaction: APPROVED
(+ CommitReservation, ReleaseShipment, OrderApproved), REJECTED with the failure's reason
(+ OrderRejected), or, when the customer asked to cancel meanwhile, CANCELLED with
everything the completed saga did undone (+ OrderCancelled). A crash between the two cannot
happen: they commit together or not at all.

An APPROVED order's cancel goes through shipping first (``ask_to_cancel_shipment``): on
ShipmentCancelled the payment is refunded and the units restocked (+ OrderCancelled); on
ShipmentCancellationRefused (the carrier has the parcel) the order stays APPROVED.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog
from chassis.messaging.consumer import UnmatchedMessage, dropped
from chassis.messaging.envelope import Envelope, parse_payload
from chassis.messaging.outbox import stage
from chassis.saga import SagaEngine, SagaInstance, Status, store
from contracts.shipping.v1 import ShipmentCancellationRefused, ShipmentCancelled
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from orders.adapters.repository import OrdersRepository
from orders.domain.model import (
    ALREADY_DISPATCHED,
    APPROVED,
    CANCELLED_BY_CUSTOMER,
    PENDING,
    Order,
    rejection_reason,
)
from orders.service_layer import events
from orders.service_layer.saga import (
    ON_APPROVAL,
    ORDER,
    SECRET_KEYS,
    UNDO_APPROVED,
    UNDO_COMPLETED,
    cancel_shipment,
)

log = structlog.get_logger("orders")

# The payment method (or, in a saga an older release started, the card number) is needed by
# one command only; once the saga has ended it leaves the data (a decline or a timeout ends
# the saga with it still there).
_FORGET_PAYMENT = text("UPDATE saga_instances SET data = data - CAST(:keys AS text[]) "
                       "WHERE id = :id AND data ?| CAST(:keys AS text[])")


class OrderSagaEngine(SagaEngine):
    def __init__(self, **kw: Any) -> None:
        super().__init__([ORDER], **kw)

    def cancel_handlers(self) -> dict[str, Any]:
        """Handlers of shipping's answers to an APPROVED order's cancel, by message type."""
        async def cancelled(session: AsyncSession, envelope: Envelope) -> None:
            await shipment_cancelled(session, envelope, self._clock())

        async def refused(session: AsyncSession, envelope: Envelope) -> None:
            await shipment_cancellation_refused(session, envelope, self._clock())

        return {ShipmentCancelled.message_type(): cancelled,
                ShipmentCancellationRefused.message_type(): refused}

    def now(self) -> datetime:
        return self._clock()

    async def start_order(self, session: AsyncSession, order: Order,
                          data: dict[str, Any]) -> None:
        # engine.start records the saga's initial data in its history: not the payment method.
        await self.start(session, ORDER, uuid.UUID(order.id), data, secret_keys=SECRET_KEYS)

    async def handle_reply(self, session: AsyncSession,
                           envelope: Envelope) -> SagaInstance | None:
        inst = await super().handle_reply(session, envelope)
        # Most replies move a running saga one step on: nothing to settle, and no need to
        # read the saga again to learn that.
        if inst is not None and inst.status != Status.RUNNING and envelope.correlation_id:
            await settle(session, envelope.correlation_id, self._clock(),
                         causation_id=str(envelope.message_id))
        return inst

    async def tick(self, session: AsyncSession, now: datetime | None = None, *,
                   limit: int = 100) -> int:
        driven = await super().tick(session, now, limit=limit)
        repo = OrdersRepository(session)
        for order_id in await repo.claim_pending_with_ended_saga(limit):
            await settle(session, order_id, now or self._clock())
        return driven


async def settle(session: AsyncSession, order_id: str, now: datetime, *,
                 causation_id: str | None = None) -> Order | None:
    """Finish a PENDING order whose saga has ended; None when there is nothing to do."""
    try:
        saga_id = uuid.UUID(order_id)
    except ValueError:
        return None
    # Locks in the order every path takes them: the saga (a reply handler holds it already),
    # then the order (the cancel endpoint takes only that one).
    inst = await store.load(session, saga_id, lock=True)
    if inst is None or inst.status == Status.RUNNING:
        return None
    repo = OrdersRepository(session)
    order = await repo.get(order_id, for_update=True)
    if order is None or order.status != PENDING:
        return None
    data = {k: v for k, v in inst.data.items() if k not in SECRET_KEYS}
    sent: list[str] = []
    if inst.status == Status.COMPLETED and order.cancel_requested:
        undo_data = {**data, "cancel_reason": "cancelled_by_customer"}
        for builder in UNDO_COMPLETED:
            sent.append(await _send(session, builder(undo_data), order_id, causation_id))
        order.cancel(now)
        await events.order_cancelled(session, order)
    elif inst.status == Status.COMPLETED:
        for builder in ON_APPROVAL:
            sent.append(await _send(session, builder(data), order_id, causation_id))
        order.approve(now)
        await events.order_approved(session, order)
    else:  # COMPENSATED, or FAILED (a compensation could not be built: logged by the engine)
        order.reject(rejection_reason(data.get("failure")), now)
        await events.order_rejected(session, order)
    await repo.save(order)
    await session.execute(_FORGET_PAYMENT, {"id": saga_id, "keys": list(SECRET_KEYS)})
    await store.record(session, saga_id, now, f"order_{order.status.lower()}",
                       detail={"reason": order.reason, "commands_sent": sent})
    log.info("order_settled", order_id=order_id, status=order.status, reason=order.reason,
             saga_status=inst.status)
    return order


async def _send(session: AsyncSession, command: Any, order_id: str,
                causation_id: str | None) -> str:
    await stage(session, command.subject(), command.message_type(), command.to_payload(),
                correlation_id=order_id, causation_id=causation_id)
    return str(command.message_type())


# -- cancel of an APPROVED order ----------------------------------------------------------------

def _order_data(order: Order) -> dict[str, Any]:
    return {"order_id": order.id, "cancel_reason": CANCELLED_BY_CUSTOMER}


async def ask_to_cancel_shipment(session: AsyncSession, order: Order, now: datetime) -> None:
    """Stage CancelShipment for an APPROVED order whose customer asked to cancel."""
    sent = await _send(session, cancel_shipment(_order_data(order)), order.id, None)
    await store.record(session, uuid.UUID(order.id), now, "cancel_requested",
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
    sent = [await _send(session, build(data), order.id, causation) for build in UNDO_APPROVED]
    order.cancel(now)
    await OrdersRepository(session).save(order)
    await events.order_cancelled(session, order)
    await store.record(session, uuid.UUID(order.id), now, "order_cancelled",
                       detail={"reason": order.reason, "commands_sent": sent})
    log.info("order_cancelled_after_approval", order_id=order.id)


async def shipment_cancellation_refused(session: AsyncSession, envelope: Envelope,
                                        now: datetime) -> None:
    event = parse_payload(ShipmentCancellationRefused, envelope)
    order = await _approved_cancelling(session, event.order_id)
    if order is None or not order.refuse_cancel(ALREADY_DISPATCHED, now):
        return
    await OrdersRepository(session).save(order)
    await store.record(session, uuid.UUID(order.id), now, "cancel_refused",
                       detail={"reason": order.reason, "shipment_status": event.status})
    log.info("order_cancel_refused", order_id=order.id, reason=order.reason)
