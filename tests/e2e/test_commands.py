"""Commands through the broker to the services the order saga will drive, as the saga will
send them: payments (with its provider process) and shipping, answered through the edge."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from chassis.messaging.envelope import Envelope
from contracts.payments.v2 import AuthorizePayment
from contracts.shipping.v1 import CreateShipment, ShipmentLine, ShippingAddress
from edge_helpers import Platform, nats_connect, wait_until

pytestmark = pytest.mark.e2e


def send(platform: Platform, command: AuthorizePayment | CreateShipment, order_id: str) -> None:
    async def publish() -> None:
        nc = await nats_connect(platform)
        try:
            env = Envelope.new(command.subject(), command.message_type(), command.to_payload(),
                               correlation_id=order_id)
            await nc.jetstream().publish(env.subject, env.body(), headers=env.headers())
        finally:
            await nc.close()

    asyncio.run(publish())


def test_payment_authorized_through_the_provider_process(platform: Platform) -> None:
    order_id, payment_id = str(uuid.uuid4()), f"pay-{uuid.uuid4().hex[:12]}"
    with platform.client() as c:
        user = platform.register(c)
        customer = {"Authorization": "Bearer " + platform.login(
            c, user["email"], user["password"])["access_token"]}
        made = c.post("/api/payments/payment-methods", headers=customer,
                      json={"card_number": "4242424242424242"})
        assert made.status_code == 201, made.text
        method = made.json()
        send(platform, AuthorizePayment(
            payment_id=payment_id, order_id=order_id, customer_id=user["id"], amount="45000",
            currency="KRW", payment_method_id=method["id"], card_last4=method["last4"]),
            order_id)
        admin = {"Authorization": f"Bearer {platform.admin_token(c)}"}
        url = f"/api/payments/payments/{payment_id}"
        payment = wait_until(lambda: c.get(url, headers=admin).status_code == 200
                             and c.get(url, headers=admin).json(), 30, "the authorized payment")
        assert payment["status"] == "AUTHORIZED" and payment["card_last4"] == "4242"
        assert "4242424242424242" not in str(payment)
        assert c.get(url).status_code == 401  # admin only, checked at the edge


def test_shipment_created_and_tracked(platform: Platform) -> None:
    order_id, shipment_id = str(uuid.uuid4()), f"shp-{uuid.uuid4().hex[:12]}"
    customer = str(uuid.uuid4())
    send(platform, CreateShipment(
        shipment_id=shipment_id, order_id=order_id, customer_id=customer,
        address=ShippingAddress(name="Ada", line1="1 Main St", city="Seoul",
                                postal_code="04524", country="KR"),
        lines=[ShipmentLine(sku="COF-ETH-250", quantity=1)]), order_id)
    with platform.client() as c:
        admin = {"Authorization": f"Bearer {platform.admin_token(c)}"}
        url = f"/api/shipping/shipments/{shipment_id}"
        shipment = wait_until(lambda: c.get(url, headers=admin).status_code == 200
                              and c.get(url, headers=admin).json(), 30, "the shipment")
        assert shipment["order_id"] == order_id and shipment["status"] == "CREATED"
        tracked = c.get(f"/api/shipping/track/{shipment['tracking_number']}")
        assert tracked.status_code == 200 and tracked.json()["status"] == "CREATED"
