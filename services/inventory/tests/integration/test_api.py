"""The inventory API against a real PostgreSQL (embedded), without NATS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from chassis.clock import utc_now
from chassis.db import Database
from chassis.testing import TokenMinter, assert_problem
from contracts.inventory.v1 import ReserveStock, StockLine
from fastapi.testclient import TestClient
from inventory.app import create_app
from inventory.domain.model import Policy
from inventory.service_layer.handlers import reserve_stock
from inventory.settings import InventorySettings
from inventory_kit import Inventory

pytestmark = pytest.mark.integration

minter = TokenMinter()
ADMIN = minter.auth(["customer", "admin"])
CUSTOMER = minter.auth(["customer"])


def make_client(database_url: str, **overrides: Any) -> TestClient:
    settings = InventorySettings(database_url=database_url, nats_url="",
                                 register_instance=False, max_body_bytes=4096, **overrides)
    return TestClient(create_app(settings, key_source=minter.key_source()),
                      raise_server_exceptions=False)


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with make_client(database_url) as c:
        yield c


def run_db(database_url: str) -> Callable[[Callable[[Inventory], Any]], Any]:
    """Run ``async fn(inventory)`` on its own connection (outside the app's event loop)."""

    def run(fn: Callable[[Inventory], Any]) -> Any:
        async def main() -> Any:
            db = Database(database_url, pool_size=2)
            try:
                return await fn(Inventory(db))
            finally:
                await db.dispose()

        return asyncio.run(main())

    return run


@pytest.fixture
def on_db(database_url: str) -> Callable[[Callable[[Inventory], Any]], Any]:
    return run_db(database_url)


def reserve(database_url: str, rid: str, sku: str, quantity: int, *,
            ago: timedelta = timedelta(0)) -> None:
    async def main() -> None:
        db = Database(database_url, pool_size=1)
        try:
            async with db.unit_of_work() as uow:
                await reserve_stock(uow.session, ReserveStock(
                    reservation_id=rid, order_id="o-1",
                    lines=[StockLine(sku=sku, quantity=quantity)]),
                    Policy(reservation_ttl=timedelta(minutes=15)), now=utc_now() - ago)
                await uow.commit()
        finally:
            await db.dispose()

    asyncio.run(main())




def test_admin_sets_on_hand_and_anyone_reads_it(client: TestClient) -> None:
    assert_problem(client.get("/api/inventory/stock/MUG-1"), 404)
    put = client.put("/api/inventory/stock/MUG-1", json={"on_hand": 7}, headers=ADMIN)
    assert put.status_code == 200, put.text
    assert put.json() == {"sku": "MUG-1", "on_hand": 7, "available": 7, "reserved": 0}
    assert client.get("/api/inventory/stock/MUG-1").json() == put.json()
    again = client.put("/api/inventory/stock/MUG-1", json={"on_hand": 0}, headers=ADMIN)
    assert again.json()["on_hand"] == 0


def test_customer_gets_403_and_anonymous_401(client: TestClient) -> None:
    assert_problem(client.put("/api/inventory/stock/MUG-1", json={"on_hand": 7},
                              headers=CUSTOMER), 403)
    anonymous = client.put("/api/inventory/stock/MUG-1", json={"on_hand": 7})
    assert_problem(anonymous, 401)
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    expired = minter.auth(["admin"], ttl_s=-60)
    assert_problem(client.put("/api/inventory/stock/MUG-1", json={"on_hand": 7},
                              headers=expired), 401)
    assert_problem(client.get("/api/inventory/reservations/r1", headers=CUSTOMER), 403)
    assert_problem(client.get("/api/inventory/reservations/r1"), 401)
    assert_problem(client.get("/api/inventory/stock/MUG-1"), 404)  # nothing was written


BAD_BODIES = [{"on_hand": -1}, {"on_hand": "5"}, {"on_hand": 1.5}, {"on_hand": None},
              {"on_hand": True}, {"on_hand": 2_000_000_000}, {"on_hand": 5, "unexpected": 1},
              {}, [5], "5"]


def test_a_whole_number_written_with_a_fraction_is_a_whole_number(client: TestClient) -> None:
    # JSON has one number type, and JSON Schema's "integer" takes 7.0: so does the service.
    put = client.put("/api/inventory/stock/MUG-1", json={"on_hand": 7.0}, headers=ADMIN)
    assert put.status_code == 200, put.text
    assert put.json()["on_hand"] == 7


def test_bad_bodies_are_422_and_write_nothing(client: TestClient) -> None:
    for body in BAD_BODIES:  # one app for all: each case costs a request, not a database
        resp = client.put("/api/inventory/stock/MUG-1", json=body, headers=ADMIN)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
    assert_problem(client.get("/api/inventory/stock/MUG-1"), 404)


def test_malformed_oversize_and_bad_sku_write_nothing(client: TestClient) -> None:
    headers = {**ADMIN, "content-type": "application/json"}
    assert_problem(client.put("/api/inventory/stock/MUG-1", content=b'{"on_hand": ',
                              headers=headers), 422)
    assert_problem(client.put("/api/inventory/stock/MUG-1",
                              content=b'{"on_hand": 1, "pad": "' + b"x" * 5000 + b'"}',
                              headers=headers), 413)
    for bad in ("mug-1", "M", "A" * 41, "MUG_1"):
        assert_problem(client.put(f"/api/inventory/stock/{bad}", json={"on_hand": 1},
                                  headers=ADMIN), 422)
    assert_problem(client.get("/api/inventory/stock/" + "A" * 65), 422)
    assert client.get("/api/inventory/stock", params={"sku": ["MUG-1", "MUG"]}).json() \
        == {"items": []}


def test_on_hand_below_reserved_is_409(client: TestClient, database_url: str) -> None:
    client.put("/api/inventory/stock/MUG-1", json={"on_hand": 10}, headers=ADMIN)
    reserve(database_url, "r1", "MUG-1", 4)
    assert client.get("/api/inventory/stock/MUG-1").json() == {
        "sku": "MUG-1", "on_hand": 10, "available": 6, "reserved": 4}
    conflict = client.put("/api/inventory/stock/MUG-1", json={"on_hand": 3}, headers=ADMIN)
    assert_problem(conflict, 409)
    assert conflict.json()["reserved"] == 4
    assert client.get("/api/inventory/stock/MUG-1").json()["on_hand"] == 10
    ok = client.put("/api/inventory/stock/MUG-1", json={"on_hand": 4}, headers=ADMIN)
    assert ok.json() == {"sku": "MUG-1", "on_hand": 4, "available": 0, "reserved": 4}


def test_stock_low_is_published_when_an_adjustment_drops_below_threshold(
        client: TestClient, on_db: Callable) -> None:
    client.put("/api/inventory/stock/MUG-1", json={"on_hand": 10}, headers=ADMIN)
    client.put("/api/inventory/stock/MUG-1", json={"on_hand": 3}, headers=ADMIN)
    client.put("/api/inventory/stock/MUG-1", json={"on_hand": 2}, headers=ADMIN)
    [low] = on_db(lambda inv: inv.events("StockLow.v1"))
    assert (low["sku"], low["available"], low["threshold"]) == ("MUG-1", 3, 5)


def test_list_stock_of_several_skus(client: TestClient) -> None:
    for sku, n in (("MUG-1", 1), ("MUG-2", 2)):
        client.put(f"/api/inventory/stock/{sku}", json={"on_hand": n}, headers=ADMIN)
    found = client.get("/api/inventory/stock", params={"sku": ["MUG-2", "NOPE", "MUG-1"]})
    assert found.status_code == 200
    assert [(i["sku"], i["available"]) for i in found.json()["items"]] == [("MUG-2", 2),
                                                                           ("MUG-1", 1)]
    assert_problem(client.get("/api/inventory/stock"), 422)
    assert_problem(client.get("/api/inventory/stock",
                              params={"sku": [f"S-{i}" for i in range(101)]}), 422)


def test_admin_reads_a_reservation(client: TestClient, database_url: str) -> None:
    client.put("/api/inventory/stock/MUG-1", json={"on_hand": 10}, headers=ADMIN)
    reserve(database_url, "r1", "MUG-1", 2)
    found = client.get("/api/inventory/reservations/r1", headers=ADMIN)
    assert found.status_code == 200
    body = found.json()
    assert (body["status"], body["order_id"], body["lines"]) == (
        "reserved", "o-1", [{"sku": "MUG-1", "quantity": 2}])
    assert body["expires_at"] is not None
    assert_problem(client.get("/api/inventory/reservations/nope", headers=ADMIN), 404)


def test_the_running_service_releases_expired_reservations(database_url: str,
                                                           on_db: Callable) -> None:
    with make_client(database_url, expiry_interval_s=0.05) as client:
        client.put("/api/inventory/stock/MUG-1", json={"on_hand": 10}, headers=ADMIN)
        reserve(database_url, "r1", "MUG-1", 2, ago=timedelta(minutes=16))
        deadline = time.monotonic() + 5
        while client.get("/api/inventory/stock/MUG-1").json()["reserved"] and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.get("/api/inventory/stock/MUG-1").json()["reserved"] == 0
        status = client.get("/api/inventory/reservations/r1", headers=ADMIN).json()
        assert (status["status"], status["reason"]) == ("released", "expired")
    [released] = on_db(lambda inv: inv.events("StockReleased.v1"))
    assert released["reason"] == "expired"
