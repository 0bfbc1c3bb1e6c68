"""The running service over real NATS JetStream: its durable consumers read the producers'
streams and the API shows the result."""

from __future__ import annotations

import asyncio
import time
import uuid

import nats
import pytest
from chassis.messaging.envelope import Envelope
from chassis.messaging.streams import ensure_stream
from chassis.testing import TokenMinter
from fastapi.testclient import TestClient
from order_history.app import create_app
from order_history.settings import OrderHistorySettings
from order_history_kit import envelope, life
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = pytest.mark.integration

minter = TokenMinter()


async def publish_all(nats_url: str, events: list) -> list[Envelope]:
    envelopes = [envelope(event) for event in events]
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for producer in ("orders", "payments", "shipping"):
            await ensure_stream(js, f"{producer.upper()}_EVENTS", [f"{producer}.events.>"])
        for env in envelopes:
            await js.publish(env.subject, env.body(), headers=env.headers(), timeout=5)
    finally:
        await nc.close()
    return envelopes


async def handled_types(database_url: str, envelopes: list[Envelope]) -> list[str]:
    """The message types of these envelopes that the durable consumers took (inbox rows)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text(
                "SELECT message_type FROM inbox WHERE message_id = ANY(:ids)"),
                {"ids": [e.message_id for e in envelopes]})
            return sorted(r[0] for r in rows)
    finally:
        await engine.dispose()


def test_events_on_the_streams_reach_the_api(database_url: str, nats_url: str) -> None:
    order_id, customer = f"js-{uuid.uuid4().hex[:12]}", f"cust-{uuid.uuid4().hex[:8]}"
    settings = OrderHistorySettings(database_url=database_url, nats_url=nats_url,
                                    register_instance=False)
    owner = minter.auth(["customer"], subject=customer)
    with TestClient(create_app(settings, key_source=minter.key_source())) as client:
        # Newest first on purpose: the shipment and the approval overtake the order.
        envelopes = asyncio.run(publish_all(nats_url, life(order_id, customer)[::-1]))
        deadline = time.monotonic() + 15
        body: dict = {}
        while time.monotonic() < deadline:
            resp = client.get(f"/api/history/orders/{order_id}", headers=owner)
            body = resp.json()
            if resp.status_code == 200 and body["placed_at"] and (
                    body["status"], body["payment_status"], body["shipment_status"]) == (
                    "APPROVED", "CAPTURED", "DISPATCHED"):
                break
            time.sleep(0.05)
        assert (body["status"], body["payment_status"], body["shipment_status"]) == (
            "APPROVED", "CAPTURED", "DISPATCHED"), body
        assert body["total"] == body["amount_captured"] == {"amount": "30000",
                                                            "currency": "KRW"}
        assert body["tracking_number"] == f"MS{order_id[:8].upper()}"
        listed = client.get("/api/history/orders", headers=owner).json()
        assert [o["id"] for o in listed["items"]] == [order_id]
        # The saga steps' own events never reached the durable consumers (ADR 0039): the
        # approval told the capture, the shipment and its tracking number.
        assert asyncio.run(handled_types(database_url, envelopes)) == [
            "OrderApproved.v1", "OrderPlaced.v1", "ShipmentStatusChanged.v1"]
