"""The notifications service's message entrypoints: two durable consumers on the streams
orders and shipping own (they declare them; started first, a consumer retries until the
stream exists).

Each consumer filters on the subjects of the events it handles, not on the whole stream:
another event the producer publishes (now or added later) never reaches it, so it can be
neither mishandled nor dead-lettered as "no handler". Handlers decode the contract and queue
a notification in the consumer's transaction (the one writing the inbox row).
"""

from __future__ import annotations

from chassis.messaging.consumer import ConsumerSpec, Handler
from chassis.messaging.envelope import Envelope, parse_payload
from chassis.messaging.streams import events_stream_name
from contracts.orders.v1 import OrderApproved, OrderCancelled, OrderPlaced, OrderRejected
from contracts.shipping.v1 import ShipmentStatusChanged
from sqlalchemy.ext.asyncio import AsyncSession

from notifications.service_layer import handlers

ORDERS_CONSUMER = "notifications-orders"
SHIPPING_CONSUMER = "notifications-shipping"
ORDER_EVENTS = (OrderPlaced, OrderApproved, OrderRejected, OrderCancelled)


def _order_handler(model: type[handlers.OrderEvent]) -> Handler:
    async def handle(session: AsyncSession, envelope: Envelope) -> None:
        await handlers.on_order_event(session, parse_payload(model, envelope))

    return handle


async def _shipment_status(session: AsyncSession, envelope: Envelope) -> None:
    await handlers.on_shipment_status(session, parse_payload(ShipmentStatusChanged, envelope))


def consumer_specs() -> list[ConsumerSpec]:
    return [
        ConsumerSpec(ORDERS_CONSUMER, events_stream_name("orders"),
                     [m.subject() for m in ORDER_EVENTS],
                     {m.message_type(): _order_handler(m) for m in ORDER_EVENTS}),
        ConsumerSpec(SHIPPING_CONSUMER, events_stream_name("shipping"),
                     [ShipmentStatusChanged.subject()],
                     {ShipmentStatusChanged.message_type(): _shipment_status}),
    ]
