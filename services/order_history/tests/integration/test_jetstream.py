"""The running service over real NATS JetStream: its durable consumers read the producers'
streams and the API shows the result."""

from __future__ import annotations

import asyncio
import time
import uuid

import nats
import pytest
from chassis.messaging.streams import ensure_stream
from chassis.testing import TokenMinter
from fastapi.testclient import TestClient
from order_history.app import create_app
from order_history.settings import OrderHistorySettings
from order_history_kit import envelope, life

pytestmark = pytest.mark.integration

minter = TokenMinter()


async def publish_all(nats_url: str, events: list) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for producer in ("orders", "payments", "shipping"):
            await ensure_stream(js, f"{producer.upper()}_EVENTS", [f"{producer}.events.>"])
        for event in events:
            env = envelope(event)
            await js.publish(env.subject, env.body(), headers=env.headers(), timeout=5)
    finally:
        await nc.close()


def test_events_on_the_streams_reach_the_api(database_url: str, nats_url: str) -> None:
    order_id, customer = f"js-{uuid.uuid4().hex[:12]}", f"cust-{uuid.uuid4().hex[:8]}"
    settings = OrderHistorySettings(database_url=database_url, nats_url=nats_url,
                                    register_instance=False)
    owner = minter.auth(["customer"], subject=customer)
    with TestClient(create_app(settings, key_source=minter.key_source())) as client:
        # Newest first on purpose: the shipment and the approval overtake the order.
        asyncio.run(publish_all(nats_url, life(order_id, customer)[::-1]))
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
        listed = client.get("/api/history/orders", headers=owner).json()
        assert [o["id"] for o in listed["items"]] == [order_id]
