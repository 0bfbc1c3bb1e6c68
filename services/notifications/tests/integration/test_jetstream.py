"""The running service over real NATS JetStream: its durable consumers read the producers'
streams (declared by them, possibly after the service started) and the sender mails the
result to a real sink."""

from __future__ import annotations

import asyncio
import time
import uuid

import nats
import pytest
from chassis.messaging.streams import ensure_events_stream
from chassis.testing import TokenMinter
from contracts.base import Contract
from fastapi.testclient import TestClient
from notifications.app import create_app
from notifications.settings import NotificationsSettings
from notifications_kit import MailSink, approved, envelope, placed, shipment

pytestmark = pytest.mark.integration

minter = TokenMinter()


async def publish(nats_url: str, *messages: Contract) -> None:
    """As the producers do: declare their events streams, then publish."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_events_stream(js, "orders")
        await ensure_events_stream(js, "shipping")
        for message in messages:
            env = envelope(message)
            await js.publish(env.subject, env.body(), headers=env.headers(), timeout=2)
    finally:
        await nc.close()


def test_events_over_jetstream_become_one_email_each(database_url: str, nats_url: str,
                                                     sink: MailSink) -> None:
    sink.start()
    order = f"o-{uuid.uuid4()}"
    settings = NotificationsSettings(database_url=database_url, nats_url=nats_url,
                                     register_instance=False, smtp_port=sink.smtp_port,
                                     sender_interval_s=0.05)
    with TestClient(create_app(settings, key_source=minter.key_source())):
        placed_event = placed(order)
        asyncio.run(publish(nats_url, placed_event, approved(order),
                            shipment(order, "DISPATCHED"), shipment(order, "IN_TRANSIT"),
                            shipment(order, "DELIVERED"),
                            placed_event, approved(order)))  # re-published: new ids
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            mine = [m for m in sink.messages() if m["notification"].startswith(order + "/")]
            if len(mine) >= 4:
                break
            time.sleep(0.1)
        time.sleep(0.3)  # a duplicate, if any, would come right behind
        mine = sorted(m["notification"] for m in sink.messages()
                      if m["notification"].startswith(order + "/"))
    assert mine == [f"{order}/{kind}" for kind in (
        "order_approved", "order_placed", "shipment_delivered", "shipment_dispatched")]
