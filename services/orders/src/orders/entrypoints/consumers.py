"""The orders service's message entrypoint: the order saga's replies.

Inventory, payments and shipping publish their outcomes as events on their own streams. A
ConsumerSpec reads one stream, so there is one durable consumer per stream, all sharing the
saga engine's handlers (each runs in the consumer's transaction, with the inbox row).

Shipping's consumer also reads its answers to the cancel of an APPROVED order.

``orders-catalog-events`` keeps the replica of the catalog's products that placing an order
reads its prices from, ``orders-identity-events`` the replica of the customers' addresses it
ships to (ADR 0036).

Each consumer filters on exactly the subjects of the replies the saga awaits, not on
``<producer>.events.>``: the inbox consumer dead-letters a message type it has no handler
for, and those streams carry many events the saga does not read (StockLow, PaymentVoided,
ShipmentStatusChanged...).
"""

from __future__ import annotations

from chassis.messaging.consumer import ConsumerSpec
from chassis.messaging.streams import events_stream_name
from chassis.saga import SagaEngine
from contracts.base import Event
from contracts.shipping.v1 import ShipmentCancellationRefused, ShipmentCancelled

from orders.service_layer import cancellation, catalog_replica, identity_replica
from orders.service_layer.saga import REPLIES

# Shipping's answers to the cancel of an APPROVED order (after the saga, not part of it).
CANCEL_REPLIES: tuple[type[Event], ...] = (ShipmentCancelled, ShipmentCancellationRefused)

SAGA_REPLIES_CONSUMER = "orders-saga-replies"
CATALOG_CONSUMER = "orders-catalog-events"
IDENTITY_CONSUMER = "orders-identity-events"
REPLYING_SERVICES = ("inventory", "payments", "shipping")


def consumer_name(producer: str) -> str:
    # Durable names are per stream in JetStream, but dead letters and metrics are keyed by
    # consumer name: one name per stream keeps them apart (and replayable).
    return f"{SAGA_REPLIES_CONSUMER}-{producer}"


def consumer_specs(engine: SagaEngine) -> list[ConsumerSpec]:
    handlers = {**engine.handlers(), **cancellation.handlers(engine.now)}
    specs = []
    for producer in REPLYING_SERVICES:
        replies = [r for r in (*REPLIES, *CANCEL_REPLIES) if r.owner == producer]
        specs.append(ConsumerSpec(
            consumer_name(producer), events_stream_name(producer),
            sorted({r.subject() for r in replies}),
            {r.message_type(): handlers[r.message_type()] for r in replies},
            # A capture whose receiver sent the shipment's command itself (ADR 0053) is
            # acked unread: the saga awaits what shipping answers.
            skip_forwarded=True))
    # CATALOG_EVENTS is declared by catalog; until it exists the consumer loop retries.
    specs.append(ConsumerSpec(CATALOG_CONSUMER, events_stream_name("catalog"),
                              sorted(e.subject() for e in catalog_replica.HANDLED),
                              catalog_replica.handlers()))
    specs.append(ConsumerSpec(IDENTITY_CONSUMER, events_stream_name("identity"),
                              sorted(e.subject() for e in identity_replica.HANDLED),
                              identity_replica.handlers()))
    return specs
