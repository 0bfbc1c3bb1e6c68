"""The shipping API against a real PostgreSQL (embedded), without NATS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from chassis.db import Database
from chassis.testing import TokenMinter, assert_problem
from contracts.shipping.v1 import CancelShipment, ReleaseShipment
from fastapi.testclient import TestClient
from shipping.app import create_app
from shipping.domain.model import Timetable
from shipping.service_layer.handlers import cancel_shipment, create_shipment, release_shipment
from shipping.settings import ShippingSettings
from shipping_kit import Shipping, create, release

pytestmark = pytest.mark.integration

minter = TokenMinter()
ADMIN = minter.auth(["customer", "admin"], subject="admin-1")
ALICE = minter.auth(["customer"], subject="alice")
BOB = minter.auth(["customer"], subject="bob")


def make_client(database_url: str, **overrides: Any) -> TestClient:
    settings = ShippingSettings(**{"database_url": database_url, "nats_url": "",
                                   "register_instance": False, "carrier_interval_s": 0,
                                   **overrides})
    return TestClient(create_app(settings, key_source=minter.key_source()),
                      raise_server_exceptions=False)


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with make_client(database_url) as c:
        yield c


def seed(database_url: str, *commands: Any, timetable: Timetable | None = None) -> None:
    """Run commands through the service layer on their own connection (outside the app's
    event loop), as the command consumer would."""

    async def main() -> None:
        db = Database(database_url, pool_size=1)
        try:
            for cmd in commands:
                async with db.unit_of_work() as uow:
                    if isinstance(cmd, CancelShipment):
                        await cancel_shipment(uow.session, cmd)
                    elif isinstance(cmd, ReleaseShipment):
                        await release_shipment(uow.session, cmd, timetable or Timetable())
                    else:
                        await create_shipment(uow.session, cmd, timetable or Timetable())
                    await uow.commit()
        finally:
            await db.dispose()

    asyncio.run(main())




def test_a_customer_sees_only_their_own_shipments(client: TestClient,
                                                  database_url: str) -> None:
    seed(database_url, create("a1", customer="alice"), create("a2", customer="alice"),
         create("b1", customer="bob"),
         CancelShipment(shipment_id="ghost", order_id="order-ghost"))  # a tombstone
    mine = client.get("/api/shipping/shipments", headers=ALICE)
    assert mine.status_code == 200, mine.text
    assert sorted(s["id"] for s in mine.json()) == ["a1", "a2"]
    one = client.get("/api/shipping/shipments/a1", headers=ALICE).json()
    assert (one["id"], one["order_id"], one["status"]) == ("a1", "order-a1", "CREATED")
    assert one["tracking_number"].startswith("MS")
    assert [h["status"] for h in one["history"]] == ["CREATED"]
    assert set(one) == {"id", "order_id", "status", "tracking_number", "created_at",
                        "updated_at", "history"}
    by_order = client.get("/api/shipping/shipments", params={"order_id": "order-a2"},
                          headers=ALICE)
    assert [s["id"] for s in by_order.json()] == ["a2"]
    # Bob's shipment does not exist for Alice, whichever way she asks.
    assert_problem(client.get("/api/shipping/shipments/b1", headers=ALICE), 404)
    assert client.get("/api/shipping/shipments", params={"order_id": "order-b1"},
                      headers=ALICE).json() == []
    assert [s["id"] for s in client.get("/api/shipping/shipments", headers=BOB).json()] \
        == ["b1"]
    assert_problem(client.get("/api/shipping/shipments/a1", headers=BOB), 404)
    assert_problem(client.get("/api/shipping/shipments/ghost", headers=ALICE), 404)


def test_an_admin_sees_every_shipment(client: TestClient, database_url: str) -> None:
    seed(database_url, create("a1", customer="alice"), create("b1", customer="bob"))
    every = client.get("/api/shipping/shipments", headers=ADMIN).json()
    assert sorted(s["id"] for s in every) == ["a1", "b1"]
    assert client.get("/api/shipping/shipments/b1", headers=ADMIN).json()["id"] == "b1"
    assert [s["id"] for s in client.get("/api/shipping/shipments", headers=ADMIN,
                                        params={"order_id": "order-b1"}).json()] == ["b1"]
    assert len(client.get("/api/shipping/shipments", headers=ADMIN,
                          params={"limit": 1}).json()) == 1
    assert_problem(client.get("/api/shipping/shipments/nope", headers=ADMIN), 404)


def test_anonymous_and_bad_tokens_get_401(client: TestClient, database_url: str) -> None:
    seed(database_url, create("a1", customer="alice"))
    for path in ("/api/shipping/shipments", "/api/shipping/shipments/a1"):
        anonymous = client.get(path)
        assert_problem(anonymous, 401)
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert_problem(client.get(path, headers=minter.auth(["customer"], subject="alice",
                                                            ttl_s=-60)), 401)
        assert_problem(client.get(path, headers=TokenMinter().auth(["admin"])), 401)


def test_tracking_is_public_and_shows_the_status_only(client: TestClient,
                                                      database_url: str) -> None:
    seed(database_url, create("a1", customer="alice"))
    number = client.get("/api/shipping/shipments/a1", headers=ALICE).json()["tracking_number"]
    tracked = client.get(f"/api/shipping/track/{number}")
    assert tracked.status_code == 200, tracked.text
    assert set(tracked.json()) == {"tracking_number", "status", "updated_at"}
    assert (tracked.json()["tracking_number"], tracked.json()["status"]) == (number, "CREATED")
    assert client.get(f"/api/shipping/track/{number.lower()}").json()["status"] == "CREATED"
    assert_problem(client.get("/api/shipping/track/MSNOSUCHNUMBER"), 404)


def test_bad_input_is_4xx_problem_json(client: TestClient) -> None:
    assert_problem(client.get("/api/shipping/track/" + "A" * 33), 422)
    assert_problem(client.get("/api/shipping/track/MS%20OR%201=1"), 422)
    assert_problem(client.get("/api/shipping/shipments/" + "x" * 201, headers=ADMIN), 422)
    for params in ({"order_id": ""}, {"order_id": "o" * 201}, {"limit": 0}, {"limit": 101},
                   {"limit": "many"}):
        assert_problem(client.get("/api/shipping/shipments", params=params, headers=ADMIN),
                       422)


def test_the_running_service_moves_shipments_to_delivered(database_url: str) -> None:
    fast = Timetable(*(timedelta(seconds=0.05),) * 3)
    with make_client(database_url, carrier_interval_s=0.02, dispatch_after_s=0.05,
                     in_transit_after_s=0.05, deliver_after_s=0.05) as client:
        seed(database_url, create("slow", customer="alice"), release("slow"),
             timetable=Timetable(to_dispatched=timedelta(hours=1)))
        seed(database_url, create("held", customer="alice"))  # its order is not approved
        seed(database_url, create("a1", customer="alice"), release("a1"), timetable=fast)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            body = client.get("/api/shipping/shipments/a1", headers=ALICE).json()
            if body["status"] == "DELIVERED":
                break
            time.sleep(0.02)
        assert [h["status"] for h in body["history"]] == [
            "CREATED", "DISPATCHED", "IN_TRANSIT", "DELIVERED"]
        ats = [h["at"] for h in body["history"]]
        assert ats == sorted(ats) and body["updated_at"] == ats[-1]
        tracked = client.get(f"/api/shipping/track/{body['tracking_number']}").json()
        assert tracked["status"] == "DELIVERED"
        # Rounds ran all along; none moved the shipment whose hour is not up, nor the one
        # never released.
        for sid in ("slow", "held"):
            assert client.get(f"/api/shipping/shipments/{sid}",
                              headers=ALICE).json()["status"] == "CREATED"

    async def read_events() -> list[str]:
        db = Database(database_url, pool_size=1)
        try:
            return [e["status"] for e in await Shipping(db).events("ShipmentStatusChanged.v1")]
        finally:
            await db.dispose()

    assert asyncio.run(read_events()) == ["DISPATCHED", "IN_TRANSIT", "DELIVERED"]
