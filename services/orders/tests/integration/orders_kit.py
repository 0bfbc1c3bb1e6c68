"""Helpers for the orders integration tests: fake identity/catalog/payments servers, and the
saga's other side (commands relayed out of the outbox into an in-memory broker, replies delivered
through the real inbox consumers)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import jwt
import orjson
from aiohttp import web
from chassis.auth import KeySource
from chassis.db import Database
from chassis.messaging.broker import Outgoing
from chassis.messaging.consumer import InboxConsumer
from chassis.messaging.envelope import H_TYPE, Envelope
from chassis.messaging.memory import InMemoryBroker, MemoryDelivery
from chassis.messaging.relay import OutboxRelay
from chassis.messaging.streams import events_stream_name
from chassis.saga import SagaEngine
from chassis.testing import ThreadedUpstream, TokenMinter
from contracts.base import Event
from fastapi.testclient import TestClient
from orders.app import create_app
from orders.entrypoints.consumers import consumer_specs
from orders.service_layer.saga import DEFINITIONS
from orders.settings import OrdersSettings
from sqlalchemy import text

ADDRESS = {"name": "Kim Min-ji", "line1": "1 Sejong-daero", "line2": None, "city": "Seoul",
           "postal_code": "04524", "country": "KR", "phone": None}
# Catalog product ids are UUIDs.
MUG, TEA, OLD = ("00000000-0000-4000-8000-00000000a001", "00000000-0000-4000-8000-00000000a002",
                 "00000000-0000-4000-8000-00000000a003")
PRODUCTS = {
    MUG: {"id": MUG, "sku": "MUG-1", "name": "Mug", "status": "active", "version": 1,
          "price": {"amount": "12900", "currency": "KRW"}},
    TEA: {"id": TEA, "sku": "TEA-1", "name": "Tea", "status": "active", "version": 1,
          "price": {"amount": "3500", "currency": "KRW"}},
    OLD: {"id": OLD, "sku": "OLD-1", "name": "Old", "status": "discontinued", "version": 2,
          "price": {"amount": "100", "currency": "KRW"}},
}


def claims_of(authorization: str | None) -> dict[str, Any]:
    """The claims of a forwarded token (the real services verify it; the fake trusts it)."""
    if not authorization:
        return {}
    return dict(jwt.decode(authorization.removeprefix("Bearer "),
                           options={"verify_signature": False}))


def subject_of(authorization: str | None) -> str | None:
    """The caller a forwarded token names."""
    sub = claims_of(authorization).get("sub")
    return str(sub) if sub is not None else None


@dataclass
class FakeUpstreams(ThreadedUpstream):
    """identity and catalog in one tiny aiohttp server on 127.0.0.1, in its own thread (the
    app under test runs in the TestClient's event loop, the test itself blocks)."""

    addresses: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(PRODUCTS))
    # payment method id -> (owner, last4); the fake vault's (owner, key) -> (card, id)
    methods: dict[str, tuple[str, str]] = field(default_factory=dict)
    vault: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    cards_received: list[str] = field(default_factory=list)
    down: set[str] = field(default_factory=set)  # "identity", "catalog", "payments": 503
    hits: Counter[str] = field(default_factory=Counter)
    authorizations: list[str | None] = field(default_factory=list)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/identity/users/{user}/addresses/{address}", self._address)
        app.router.add_get("/api/catalog/products", self._products)
        app.router.add_get("/api/payments/payment-methods/{method}", self._method)
        app.router.add_post("/api/payments/payment-methods", self._tokenize)

    def add_method(self, method_id: str, owner: str, last4: str = "4242") -> str:
        self.methods[method_id] = (owner, last4)
        return method_id

    async def _address(self, request: web.Request) -> web.Response:
        self.hits["identity"] += 1
        self.authorizations.append(request.headers.get("Authorization"))
        if "identity" in self.down:
            return web.json_response({"title": "down"}, status=503)
        key = (request.match_info["user"], request.match_info["address"])
        if key not in self.addresses:
            return web.json_response({"title": "Not found"}, status=404)
        return web.json_response({"id": key[1], "user_id": key[0], **self.addresses[key]})

    async def _products(self, request: web.Request) -> web.Response:
        """GET /api/catalog/products?ids=...: those on sale, one page."""
        self.hits["catalog"] += 1
        if "catalog" in self.down:
            return web.json_response({"title": "down"}, status=503)
        ids = request.query["ids"].split(",")
        found = [p for i in ids if (p := self.products.get(i)) and p["status"] == "active"]
        return web.json_response({"items": found, "total": len(found), "page": 1,
                                  "page_size": len(ids)})

    async def _method(self, request: web.Request) -> web.Response:
        self.hits["payments"] += 1
        if "payments" in self.down:
            return web.json_response({"title": "down"}, status=503)
        method_id = request.match_info["method"]
        owner, last4 = self.methods.get(method_id, (None, ""))
        claims = claims_of(request.headers.get("Authorization"))
        # Payments answers the owner, and an admin for anyone's.
        if owner is None or (owner != claims.get("sub")
                             and "admin" not in claims.get("roles", ())):
            return web.json_response({"title": "Not found"}, status=404)
        return web.json_response({"id": method_id, "last4": last4, "brand": "visa"})

    async def _tokenize(self, request: web.Request) -> web.Response:
        self.hits["payments_tokenize"] += 1
        if "payments" in self.down:
            return web.json_response({"title": "down"}, status=503)
        card = (await request.json())["card_number"]
        self.cards_received.append(card)
        owner = subject_of(request.headers.get("Authorization")) or ""
        key = (owner, request.headers.get("Idempotency-Key") or uuid.uuid4().hex)
        if key in self.vault and self.vault[key][0] != card:
            return web.json_response({"title": "Conflict"}, status=409)
        if key not in self.vault:
            made = "pm_" + hashlib.sha256(repr(key).encode()).hexdigest()[:16]
            self.vault[key] = (card, made)
            self.add_method(made, owner, card[-4:])
        method_id = self.vault[key][1]
        return web.json_response({"id": method_id, "last4": card[-4:], "brand": "visa"},
                                 status=201)


# Signs the API tests' tokens; the app of ``api_client`` trusts its keys unless told others.
MINTER = TokenMinter()


@contextlib.contextmanager
def api_client(database_url: str, upstreams: FakeUpstreams,
               key_source: KeySource | None = None, **settings: Any) -> Iterator[TestClient]:
    """The orders app on this database, without NATS, asking the fake for identity, catalog
    and payments; ``settings`` override the rest."""
    configured = OrdersSettings(**{
        "database_url": database_url, "nats_url": "", "register_instance": False,
        "reconciler_interval_s": 0, "identity_url": upstreams.url,
        "catalog_url": upstreams.url, "payments_url": upstreams.url,
        "upstream_timeout_s": 1.0, **settings})
    with TestClient(create_app(configured, key_source=key_source or MINTER.key_source()),
                    raise_server_exceptions=False) as client:
        yield client


class StubUpstreams:
    """Stands in for orders.adapters.upstream.Upstreams when only the saga is under test."""

    async def payment_method(self, method_id: str, authorization: str | None) -> Any:
        from orders.adapters.upstream import PaymentMethodRef

        return PaymentMethodRef(method_id, "4242")

    async def tokenize(self, card_number: str, *, authorization: str | None,
                       idempotency_key: str) -> Any:
        from orders.adapters.upstream import PaymentMethodRef

        return PaymentMethodRef("pm_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:16],
                                card_number[-4:])

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

    def __init__(self, db: Database, url: str, engine: SagaEngine) -> None:
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


async def database_text(db: Database) -> str:
    """Every row of every table of the orders database, as text (a PAN scan)."""
    async with db.engine.connect() as conn:
        tables = list((await conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).scalars())
        dumped = []
        for table in tables:
            rows = (await conn.execute(text(f'SELECT t::text FROM "{table}" t'))).scalars()
            dumped += [f"{table}: {r}" for r in rows]
    return "\n".join(dumped)


async def count(db: Database, table: str) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


def deliver_events(database_url: str, consumer_name: str,
                   *events: Event | tuple[type[Event], dict[str, Any]]
                   | tuple[Event, datetime]) -> list[str]:
    """Each event, with occurred_at now, through one of orders' consumers (inbox, handler, one transaction each);
    (event type, payload) sends a payload as it is, (event, when) one that occurred then."""
    async def main() -> list[str]:
        db = Database(database_url, pool_size=2)
        try:
            spec = next(s for s in consumer_specs(SagaEngine(DEFINITIONS))
                        if s.name == consumer_name)
            consumer = InboxConsumer(spec, db, InMemoryBroker())
            outcomes = []
            for seq, event in enumerate(events, 1):
                when = None
                if isinstance(event, tuple) and isinstance(event[1], datetime):
                    event, when = event
                kind, payload = event if isinstance(event, tuple) else (type(event),
                                                                         event.to_payload())
                env = Envelope.new(kind.subject(), kind.message_type(), payload)
                if when is not None:
                    env = replace(env, occurred_at=when)
                outcomes.append(await consumer.process(
                    MemoryDelivery(env.subject, env.headers(), env.body(), seq)))
            return outcomes
        finally:
            await db.dispose()

    return asyncio.run(main())


def sql(database_url: str, statement: str) -> None:
    async def main() -> None:
        db = Database(database_url, pool_size=1)
        try:
            async with db.engine.begin() as conn:
                await conn.execute(text(statement))
        finally:
            await db.dispose()

    asyncio.run(main())
