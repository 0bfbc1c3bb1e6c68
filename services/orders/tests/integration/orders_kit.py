"""Helpers for the orders integration tests: fake identity/catalog servers, and the saga's
other side (commands relayed out of the outbox into an in-memory broker, replies delivered
through the real inbox consumers)."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from chassis.db import Database
from chassis.messaging.broker import Outgoing
from chassis.messaging.consumer import InboxConsumer
from chassis.messaging.envelope import H_TYPE, Envelope
from chassis.messaging.memory import InMemoryBroker, MemoryDelivery
from chassis.messaging.relay import OutboxRelay
from chassis.messaging.streams import events_stream_name
from chassis.testing import ThreadedUpstream
from contracts.base import Event
from orders.entrypoints.consumers import consumer_specs
from orders.service_layer.orchestrator import OrderSagaEngine
from sqlalchemy import text

ADDRESS = {"name": "Kim Min-ji", "line1": "1 Sejong-daero", "line2": None, "city": "Seoul",
           "postal_code": "04524", "country": "KR", "phone": None}
PRODUCTS = {
    "p-mug": {"id": "p-mug", "sku": "MUG-1", "name": "Mug", "status": "active",
              "price": {"amount": "12900", "currency": "KRW"}},
    "p-tea": {"id": "p-tea", "sku": "TEA-1", "name": "Tea", "status": "active",
              "price": {"amount": "3500", "currency": "KRW"}},
    "p-old": {"id": "p-old", "sku": "OLD-1", "name": "Old", "status": "discontinued",
              "price": {"amount": "100", "currency": "KRW"}},
}


@dataclass
class FakeUpstreams(ThreadedUpstream):
    """identity and catalog in one tiny aiohttp server on 127.0.0.1, in its own thread (the
    app under test runs in the TestClient's event loop, the test itself blocks)."""

    addresses: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(PRODUCTS))
    down: set[str] = field(default_factory=set)  # "identity" and/or "catalog": answer 503
    hits: Counter[str] = field(default_factory=Counter)
    authorizations: list[str | None] = field(default_factory=list)
    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/identity/users/{user}/addresses/{address}", self._address)
        app.router.add_get("/api/catalog/products/{product}", self._product)

    async def _address(self, request: web.Request) -> web.Response:
        self.hits["identity"] += 1
        self.authorizations.append(request.headers.get("Authorization"))
        if "identity" in self.down:
            return web.json_response({"title": "down"}, status=503)
        key = (request.match_info["user"], request.match_info["address"])
        if key not in self.addresses:
            return web.json_response({"title": "Not found"}, status=404)
        return web.json_response({"id": key[1], "user_id": key[0], **self.addresses[key]})

    async def _product(self, request: web.Request) -> web.Response:
        self.hits["catalog"] += 1
        if "catalog" in self.down:
            return web.json_response({"title": "down"}, status=503)
        found = self.products.get(request.match_info["product"])
        if found is None:
            return web.json_response({"title": "Not found"}, status=404)
        return web.json_response(found)


class StubUpstreams:
    """Stands in for orders.adapters.upstream.Upstreams when only the saga is under test."""

    async def address(self, customer_id: str, address_id: str,
                      authorization: str | None) -> dict[str, Any]:
        return dict(ADDRESS)

    async def products(self, product_ids: list[str]) -> dict[str, Any]:
        from decimal import Decimal

        from orders.adapters.upstream import Product

        return {p: Product(p, PRODUCTS[p]["sku"], PRODUCTS[p]["name"],
                           Decimal(PRODUCTS[p]["price"]["amount"]), "KRW", True)
                for p in product_ids}


class Services:
    """Inventory, payments and shipping as the orders service sees them: commands come out
    of its outbox (through the real relay), their events go into its inbox consumers."""

    def __init__(self, db: Database, url: str, engine: OrderSagaEngine) -> None:
        self.broker = InMemoryBroker()
        self.relay = OutboxRelay(url, self.broker)
        self.consumers = {spec.stream: InboxConsumer(spec, db, self.broker)
                          for spec in consumer_specs(engine)}
        self._seen = 0
        self._seq = 0

    async def sent(self) -> list[Outgoing]:
        """What the orders service published since the last call."""
        await self.relay.relay_once()
        fresh = self.broker.messages[self._seen:]
        self._seen = len(self.broker.messages)
        return fresh

    def envelope(self, order_id: str, event: Event) -> Envelope:
        return Envelope.new(event.subject(), event.message_type(), event.to_payload(),
                            correlation_id=order_id)

    async def reply(self, order_id: str, event: Event, envelope: Envelope | None = None) -> str:
        envelope = envelope or self.envelope(order_id, event)
        self._seq += 1
        consumer = self.consumers[events_stream_name(type(event).owner)]
        return await consumer.process(
            MemoryDelivery(envelope.subject, envelope.headers(), envelope.body(), self._seq))


def types(messages: list[Outgoing]) -> list[str]:
    return [m.headers[H_TYPE] for m in messages]


def payload(message: Outgoing) -> dict[str, Any]:
    return orjson.loads(message.payload)


async def order_row(db: Database, order_id: str) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM orders WHERE id = :id"),
                                  {"id": uuid.UUID(order_id)})).first()
    assert row is not None
    return dict(row._mapping)


async def count(db: Database, table: str) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
