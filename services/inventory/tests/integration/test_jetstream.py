"""The running service over real NATS JetStream: it declares its streams, consumes catalog
events and its command queue, and its outbox relay publishes the answers."""

from __future__ import annotations

import asyncio
import time
import uuid

import nats
import orjson
import pytest
from chassis.messaging.envelope import H_TYPE, Envelope
from chassis.messaging.streams import ensure_stream
from chassis.testing import TokenMinter
from contracts.catalog.v1 import ProductCreated
from contracts.inventory.v1 import ReserveStock, StockLine, StockReserved
from fastapi.testclient import TestClient
from inventory.app import create_app
from inventory.settings import InventorySettings
from nats.js.errors import NotFoundError

pytestmark = pytest.mark.integration

minter = TokenMinter()


async def publish(nats_url: str, env: Envelope) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for _ in range(200):  # the service declares its streams once NATS is connected
            try:
                await js.publish(env.subject, env.body(), headers=env.headers(), timeout=2)
                return
            except NotFoundError:  # no stream for the subject yet
                await asyncio.sleep(0.05)
        raise AssertionError(f"no stream took {env.subject}")
    finally:
        await nc.close()


async def next_event(nats_url: str, subject: str, reservation_id: str) -> tuple[str, dict]:
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().pull_subscribe(subject, stream="INVENTORY_EVENTS")
        for _ in range(50):
            try:
                for msg in await sub.fetch(10, timeout=0.2):
                    await msg.ack()
                    body = orjson.loads(msg.data)
                    if body.get("reservation_id") == reservation_id:
                        return (msg.headers or {})[H_TYPE], body
            except TimeoutError:
                pass
        raise AssertionError(f"no event for {reservation_id} on {subject}")
    finally:
        await nc.close()


async def declare_catalog_stream(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await ensure_stream(nc.jetstream(), "CATALOG_EVENTS", ["catalog.events.>"])
    finally:
        await nc.close()


def test_catalog_events_and_commands_over_jetstream(database_url: str, nats_url: str) -> None:
    asyncio.run(declare_catalog_stream(nats_url))  # catalog's job; here before we start
    settings = InventorySettings(database_url=database_url, nats_url=nats_url,
                                 register_instance=False, expiry_interval_s=0)
    sku = f"JS-{uuid.uuid4().hex[:8].upper()}"
    with TestClient(create_app(settings, key_source=minter.key_source())) as client:
        asyncio.run(publish(nats_url, Envelope.new(
            ProductCreated.subject(), ProductCreated.message_type(), ProductCreated(
                product_id="p1", sku=sku, name="Mug", category="kitchen",
                price_amount="1000", price_currency="KRW").to_payload())))
        for _ in range(200):
            if client.get(f"/api/inventory/stock/{sku}").status_code == 200:
                break
            time.sleep(0.05)
        assert client.get(f"/api/inventory/stock/{sku}").json()["on_hand"] == 0
        client.put(f"/api/inventory/stock/{sku}", json={"on_hand": 3},
                   headers=minter.auth(["admin"]))

        rid = str(uuid.uuid4())
        command = ReserveStock(reservation_id=rid, order_id="o-1",
                               lines=[StockLine(sku=sku, quantity=2)])
        asyncio.run(publish(nats_url, Envelope.new(command.subject(), command.message_type(),
                                                   command.to_payload())))
        kind, body = asyncio.run(next_event(nats_url, StockReserved.subject(), rid))
        assert kind == "StockReserved.v1" and body["lines"] == [{"sku": sku, "quantity": 2}]
        assert client.get(f"/api/inventory/stock/{sku}").json()["reserved"] == 2
