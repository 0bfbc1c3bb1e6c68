"""Helpers for the shipping integration tests: send contracts through a real inbox consumer
as in-memory deliveries, and read back shipments, their history and the outbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from chassis.db import Database
from chassis.messaging.consumer import InboxConsumer
from chassis.messaging.envelope import Envelope
from chassis.messaging.memory import InMemoryBroker, MemoryDelivery
from contracts.base import Contract
from contracts.shipping.v1 import (
    CreateShipment,
    ReleaseShipment,
    ShipmentLine,
    ShippingAddress,
)
from shipping.domain.model import Timetable
from shipping.entrypoints.consumers import consumer_specs
from sqlalchemy import text

ADDRESS = {"name": "Kim Min-ji", "line1": "1 Sejong-daero", "city": "Seoul",
           "postal_code": "04524", "country": "KR"}


def create(sid: str, *, customer: str = "cust-a", **address: Any) -> CreateShipment:
    return CreateShipment(shipment_id=sid, order_id=f"order-{sid}", customer_id=customer,
                          address=ShippingAddress(**{**ADDRESS, **address}),
                          lines=[ShipmentLine(sku="MUG", quantity=2)])


def release(sid: str) -> ReleaseShipment:
    """The order of ``create(sid)`` is approved: the carrier may take the parcel."""
    return ReleaseShipment(shipment_id=sid, order_id=f"order-{sid}")


def envelope(message: Contract) -> Envelope:
    return Envelope.new(message.subject(), message.message_type(), message.to_payload())


def delivery(env: Envelope, sequence: int = 1) -> MemoryDelivery:
    """One delivery of ``env``; call again with the same envelope for a redelivery that
    carries the same message id (the inbox drops it)."""
    return MemoryDelivery(env.subject, env.headers(), env.body(), sequence)


@dataclass
class Shipping:
    """The service's command consumer over a real database, fed by hand."""

    db: Database
    timetable: Timetable = field(default_factory=Timetable)
    dead_letters: InMemoryBroker = field(default_factory=InMemoryBroker)

    def __post_init__(self) -> None:
        commands, orders = consumer_specs(self.timetable)
        self.commands = InboxConsumer(commands, self.db, self.dead_letters)
        self.orders = InboxConsumer(orders, self.db, self.dead_letters)

    async def send(self, message: Contract | MemoryDelivery) -> str:
        d = message if isinstance(message, MemoryDelivery) else delivery(envelope(message))
        consumer = self.orders if d.subject.startswith("orders.") else self.commands
        return await consumer.process(d)

    async def statuses(self) -> dict[str, str]:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT shipment_id, status FROM shipments"))).all()
        return {r.shipment_id: r.status for r in rows}

    async def history(self, shipment_id: str) -> list[str]:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT status FROM shipment_history WHERE shipment_id = :s ORDER BY at"),
                {"s": shipment_id})).all()
        return [r.status for r in rows]

    async def events(self, message_type: str | None = None) -> list[dict[str, Any]]:
        """Outbox payloads in order, of one type or all (then with a ``_type`` key)."""
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT message_type, payload FROM outbox ORDER BY id"))).all()
        return [{**orjson.loads(r.payload), "_type": r.message_type} for r in rows
                if message_type is None or r.message_type == message_type]
