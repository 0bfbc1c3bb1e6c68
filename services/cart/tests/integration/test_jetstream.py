"""The running service over real NATS JetStream: its durable consumer on CATALOG_EVENTS
picks up a PriceChanged and the cart shows the new price."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import nats
import pytest
from cart.app import create_app
from cart.settings import CartSettings
from cart_kit import FakeUpstreams
from chassis.messaging.envelope import Envelope
from chassis.messaging.streams import ensure_stream
from chassis.testing import TokenMinter
from contracts.catalog.v1 import PriceChanged
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

minter = TokenMinter()


@pytest.fixture
def upstreams() -> Iterator[FakeUpstreams]:
    fake = FakeUpstreams().start()
    yield fake
    fake.stop()


async def publish(nats_url: str, envelope: Envelope) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        # catalog declares its stream; here the test does, before publishing
        await ensure_stream(js, "CATALOG_EVENTS", ["catalog.events.>"])
        await js.publish(envelope.subject, envelope.body(), headers=envelope.headers(),
                         timeout=5)
    finally:
        await nc.close()


def test_price_changed_over_jetstream_reaches_the_cart(database_url: str, nats_url: str,
                                                        upstreams: FakeUpstreams) -> None:
    product_id = f"p-{uuid.uuid4().hex[:8]}"
    upstreams.products[product_id] = {"id": product_id, "sku": "JS-1", "name": "Kettle",
                                      "status": "active",
                                      "price": {"amount": "30000", "currency": "KRW"}}
    settings = CartSettings(database_url=database_url, nats_url=nats_url,
                            register_instance=False, catalog_url=upstreams.url,
                            orders_url=upstreams.url)
    auth = minter.auth(["customer"], subject="alice")
    with TestClient(create_app(settings, key_source=minter.key_source())) as client:
        resp = client.put(f"/api/cart/items/{product_id}", json={"quantity": 2}, headers=auth)
        assert resp.status_code == 200, resp.text
        event = PriceChanged(product_id=product_id, sku="JS-1", old_amount="30000",
                             new_amount="25000", currency="KRW")
        asyncio.run(publish(nats_url, Envelope.new(event.subject(), event.message_type(),
                                                   event.to_payload())))

        def total() -> str:
            return client.get("/api/cart", headers=auth).json()["total"]["amount"]

        deadline = time.monotonic() + 60
        while total() != "50000" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert total() == "50000"
