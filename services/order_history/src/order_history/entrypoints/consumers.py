"""order_history's message entrypoints: one durable consumer per producer's events stream.

Each handler validates the contract (``parse_payload``), translates it into a ``Change`` and
merges it into the order's row in the consumer's transaction — the same one that writes the
inbox row — so an event takes effect once. Known events that do not touch the view are
handled as no-ops (and recorded in the inbox); an unknown type is dead-lettered so an
operator sees that a producer published something this service does not understand yet.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from chassis.messaging.consumer import ConsumerSpec, Handler
from chassis.messaging.envelope import Envelope, parse_payload
from chassis.messaging.streams import events_stream_name
from contracts.base import Contract
from contracts.orders.v1 import OrderApproved, OrderCancelled, OrderPlaced, OrderRejected
from contracts.payments.v1 import (
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    PaymentRefunded,
    PaymentVoided,
)
from contracts.registry import ALL
from contracts.shipping.v1 import (
    ShipmentCancellationRefused,
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentCreationFailed,
    ShipmentStatusChanged,
)
from sqlalchemy.ext.asyncio import AsyncSession

from order_history.domain.model import Change
from order_history.service_layer import changes
from order_history.service_layer.handlers import apply_change

ORDERS_CONSUMER = "order_history-orders"
PAYMENTS_CONSUMER = "order_history-payments"
SHIPPING_CONSUMER = "order_history-shipping"
CONSUMERS = (ORDERS_CONSUMER, PAYMENTS_CONSUMER, SHIPPING_CONSUMER)

# (consumer, producer) pairs: the stream is <PRODUCER>_EVENTS, the subjects <producer>.events.>
SOURCES = ((ORDERS_CONSUMER, "orders"), (PAYMENTS_CONSUMER, "payments"),
           (SHIPPING_CONSUMER, "shipping"))


def _handler(model: type[Any], translate: Callable[[Any, datetime], Change]) -> Handler:
    async def handle(session: AsyncSession, envelope: Envelope) -> None:
        await apply_change(session, translate(parse_payload(model, envelope),
                                              envelope.occurred_at))

    return handle


async def ignore(session: AsyncSession, envelope: Envelope) -> None:
    """An event that changes nothing in the view (a refused shipment cancel)."""


def _table(*pairs: tuple[type[Contract], Callable[[Any, datetime], Change]]
           ) -> dict[str, Handler]:
    return {model.message_type(): _handler(model, translate) for model, translate in pairs}


def orders_handlers() -> dict[str, Handler]:
    return _table((OrderPlaced, changes.order_placed), (OrderApproved, changes.order_approved),
                  (OrderRejected, changes.order_rejected),
                  (OrderCancelled, changes.order_cancelled))


def payments_handlers() -> dict[str, Handler]:
    return _table((PaymentAuthorized, changes.payment_authorized),
                  (PaymentDeclined, changes.payment_declined),
                  (PaymentCaptured, changes.payment_captured),
                  (PaymentVoided, changes.payment_voided),
                  (PaymentRefunded, changes.payment_refunded),
                  (PaymentFailed, changes.payment_failed))


def shipping_handlers() -> dict[str, Handler]:
    return {**_table((ShipmentCreated, changes.shipment_created),
                     (ShipmentStatusChanged, changes.shipment_status_changed),
                     (ShipmentCreationFailed, changes.shipment_creation_failed),
                     (ShipmentCancelled, changes.shipment_cancelled)),
            ShipmentCancellationRefused.message_type(): ignore}


# Events the durable consumers do not take (ADR 0039). Three are published only by the order
# saga's own steps, for every order, and OrderApproved carries their facts (the capture, the
# shipment and its tracking number): three deliveries and transactions fewer per approved
# order. The fourth changes nothing in the view. They keep their handlers: a rebuild replays
# whole streams, so orders approved before OrderApproved carried those facts get them back.
SKIPPED_BY_THE_DURABLE_CONSUMERS: tuple[type[Contract], ...] = (
    PaymentAuthorized, PaymentCaptured, ShipmentCreated, ShipmentCancellationRefused)


def subscribed(producer: str, handlers: dict[str, Handler]) -> list[str]:
    """The subjects a durable consumer takes: its producer's every event (so a type this
    release does not know yet is seen, retried and dead-lettered) unless it skips one of
    them; then only the subjects of its handled contracts, less the skipped ones."""
    skipped = {c.message_type() for c in SKIPPED_BY_THE_DURABLE_CONSUMERS}
    if not skipped & set(handlers):
        return [f"{producer}.events.>"]
    return sorted({c.subject() for c in ALL
                   if c.message_type() in handlers and c.message_type() not in skipped})


def consumer_specs() -> list[ConsumerSpec]:
    handlers = {"orders": orders_handlers(), "payments": payments_handlers(),
                "shipping": shipping_handlers()}
    # Each producer declares its own stream; until it exists the consumer loop retries.
    return [ConsumerSpec(name, events_stream_name(producer),
                         subscribed(producer, handlers[producer]), handlers[producer])
            for name, producer in SOURCES]
