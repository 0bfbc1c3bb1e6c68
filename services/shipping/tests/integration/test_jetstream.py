"""The running service over real NATS JetStream: it declares its streams, consumes its
command queue, and its outbox relay publishes the answers and the carrier's moves."""

from __future__ import annotations

import asyncio
import uuid

import nats
import orjson
import pytest
from chassis.messaging.envelope import H_TYPE, Envelope
from chassis.testing import TokenMinter
from contracts.shipping.v1 import CancelShipment
from fastapi.testclient import TestClient
from nats.js.errors import NoStreamResponseError, NotFoundError
from shipping.app import create_app
from shipping.settings import ShippingSettings
from shipping_kit import create, release

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
            except (NotFoundError, NoStreamResponseError):  # no stream for the subject yet
                await asyncio.sleep(0.05)
        raise AssertionError(f"no stream took {env.subject}")
    finally:
        await nc.close()


async def events_for(nats_url: str, shipment_id: str, count: int) -> list[tuple[str, dict]]:
    """The first ``count`` events about one shipment on SHIPPING_EVENTS, in stream order."""
    nc = await nats.connect(nats_url)
    found: list[tuple[str, dict]] = []
    try:
        sub = await nc.jetstream().pull_subscribe("shipping.events.>", stream="SHIPPING_EVENTS")
        for _ in range(100):
            try:
                for msg in await sub.fetch(10, timeout=0.2):
                    await msg.ack()
                    body = orjson.loads(msg.data)
                    if body.get("shipment_id") == shipment_id:
                        found.append(((msg.headers or {})[H_TYPE], body))
            except TimeoutError:
                pass
            if len(found) >= count:
                return found
        raise AssertionError(f"{len(found)} of {count} events for {shipment_id}: {found}")
    finally:
        await nc.close()


def send(nats_url: str, message: object) -> None:
    asyncio.run(publish(nats_url, Envelope.new(message.subject(), message.message_type(),
                                               message.to_payload())))


def test_commands_and_carrier_moves_over_jetstream(database_url: str, nats_url: str) -> None:
    settings = ShippingSettings(database_url=database_url, nats_url=nats_url,
                                register_instance=False, carrier_interval_s=0.05,
                                dispatch_after_s=0.1, in_transit_after_s=0.1,
                                deliver_after_s=0.1)
    sid, late = str(uuid.uuid4()), str(uuid.uuid4())
    with TestClient(create_app(settings, key_source=minter.key_source())):
        send(nats_url, create(sid))
        send(nats_url, release(sid))
        got = asyncio.run(events_for(nats_url, sid, 4))
        assert [kind for kind, _ in got] == ["ShipmentCreated.v1"] + \
            ["ShipmentStatusChanged.v1"] * 3
        assert [body["status"] for _, body in got[1:]] == ["DISPATCHED", "IN_TRANSIT",
                                                           "DELIVERED"]
        assert {body["tracking_number"] for _, body in got} == {got[0][1]["tracking_number"]}
        # Delivered: the saga's compensation comes too late and is refused.
        send(nats_url, CancelShipment(shipment_id=sid, order_id=f"order-{sid}"))
        send(nats_url, CancelShipment(shipment_id=late, order_id=f"order-{late}"))
        [(kind, body)] = asyncio.run(events_for(nats_url, sid, 5))[4:]
        assert (kind, body["status"]) == ("ShipmentCancellationRefused.v1", "DELIVERED")
        [(kind, _)] = asyncio.run(events_for(nats_url, late, 1))
        assert kind == "ShipmentCancelled.v1"
