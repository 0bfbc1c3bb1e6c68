"""The order_history API against a real PostgreSQL (embedded), without NATS."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from chassis.db import Database
from chassis.testing import TokenMinter, assert_problem
from contracts.base import Contract
from contracts.payments.v1 import PaymentCaptured
from fastapi.testclient import TestClient
from order_history.app import create_app
from order_history.settings import OrderHistorySettings
from order_history_kit import History, life, refunded_cancel

pytestmark = pytest.mark.integration

minter = TokenMinter()
ADMIN = minter.auth(["customer", "admin"], subject="admin-1")
ALICE = minter.auth(["customer"], subject="alice")
BOB = minter.auth(["customer"], subject="bob")
BASE = "/api/history/orders"


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    settings = OrderHistorySettings(database_url=database_url, nats_url="",
                                    register_instance=False)
    with TestClient(create_app(settings, key_source=minter.key_source()),
                    raise_server_exceptions=False) as c:
        yield c


def seed(database_url: str, *events: Contract) -> None:
    """Send events through the consumers on their own connection (outside the app's loop)."""

    async def main() -> None:
        db = Database(database_url, pool_size=1)
        try:
            h = History(db)
            for event in events:
                assert await h.send(event) == "handled"
        finally:
            await db.dispose()

    asyncio.run(main())




def test_a_customer_reads_only_their_own_orders_newest_first(client: TestClient,
                                                             database_url: str) -> None:
    seed(database_url, *life("a-old"), *refunded_cancel("a-new"), *life("b1", "bob"),
         PaymentCaptured(payment_id="px", order_id="nobody-yet", amount="5", currency="KRW"))
    mine = client.get(BASE, headers=ALICE)
    assert mine.status_code == 200, mine.text
    body = mine.json()
    assert [o["id"] for o in body["items"]] == ["a-new", "a-old"]
    assert (body["total"], body["page"], body["page_size"]) == (2, 1, 20)
    newest = body["items"][0]
    assert newest["status"] == "CANCELLED" and newest["reason"] == "customer"
    assert newest["total"] == {"amount": "30000", "currency": "KRW"}
    assert newest["amount_captured"] == newest["amount_refunded"] == {
        "amount": "30000", "currency": "KRW"}
    assert newest["payment_status"] == "REFUNDED"
    assert newest["items"] == [{"product_id": "p1", "sku": "MUG", "name": "Mug",
                                "quantity": 2, "unit_price": "15000"}]
    old = client.get(f"{BASE}/a-old", headers=ALICE).json()
    assert (old["status"], old["shipment_status"], old["tracking_number"]) == (
        "APPROVED", "DISPATCHED", "MSA-OLD")
    # A customer cannot widen the filter to someone else.
    assert [o["id"] for o in client.get(BASE, params={"customer_id": "bob"},
                                        headers=ALICE).json()["items"]] == ["a-new", "a-old"]
    paged = client.get(BASE, params={"page": 2, "page_size": 1}, headers=ALICE).json()
    assert ([o["id"] for o in paged["items"]], paged["total"]) == (["a-old"], 2)


def test_another_customers_order_is_not_found(client: TestClient, database_url: str) -> None:
    seed(database_url, *life("a1"), *life("b1", "bob"),
         PaymentCaptured(payment_id="px", order_id="nobody-yet", amount="5", currency="KRW"))
    assert_problem(client.get(f"{BASE}/a1", headers=BOB), 404)
    assert_problem(client.get(f"{BASE}/b1", headers=ALICE), 404)
    assert_problem(client.get(f"{BASE}/nobody-yet", headers=ALICE), 404)
    assert_problem(client.get(f"{BASE}/no-such-order", headers=ALICE), 404)
    assert [o["id"] for o in client.get(BASE, headers=BOB).json()["items"]] == ["b1"]


def test_an_admin_reads_every_order(client: TestClient, database_url: str) -> None:
    seed(database_url, *life("a1"), *life("b1", "bob"),
         PaymentCaptured(payment_id="px", order_id="nobody-yet", amount="12.50",
                         currency="EUR"))
    every = client.get(BASE, headers=ADMIN).json()
    assert sorted(o["id"] for o in every["items"]) == ["a1", "b1", "nobody-yet"]
    assert every["total"] == 3
    assert [o["id"] for o in client.get(BASE, params={"customer_id": "bob"},
                                        headers=ADMIN).json()["items"]] == ["b1"]
    assert client.get(f"{BASE}/a1", headers=ADMIN).json()["customer_id"] == "alice"
    unowned = client.get(f"{BASE}/nobody-yet", headers=ADMIN).json()
    assert (unowned["customer_id"], unowned["status"], unowned["payment_status"],
            unowned["items"]) == (None, None, "CAPTURED", [])
    assert unowned["amount_captured"] == {"amount": "12.50", "currency": "EUR"}
    assert_problem(client.get(f"{BASE}/nope", headers=ADMIN), 404)


def test_anonymous_and_bad_tokens_get_401(client: TestClient, database_url: str) -> None:
    seed(database_url, *life("a1"))
    for path in (BASE, f"{BASE}/a1"):
        anonymous = client.get(path)
        assert_problem(anonymous, 401)
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert_problem(client.get(path, headers=minter.auth(["customer"], subject="alice",
                                                            ttl_s=-60)), 401)
        assert_problem(client.get(path, headers=TokenMinter().auth(["admin"])), 401)


def test_bad_input_is_4xx_problem_json(client: TestClient) -> None:
    assert_problem(client.get(f"{BASE}/" + "x" * 201, headers=ADMIN), 422)
    for params in ({"page": 0}, {"page": 10_001}, {"page_size": 0}, {"page_size": 101},
                   {"page_size": "many"}, {"customer_id": ""}, {"customer_id": "c" * 201}):
        assert_problem(client.get(BASE, params=params, headers=ADMIN), 422)


def test_docs_and_openapi_live_under_the_api_prefix(client: TestClient) -> None:
    spec = client.get("/api/history/openapi.json").json()
    assert set(spec["paths"]) == {BASE, BASE + "/{order_id}"}
    assert client.get("/api/history/docs").status_code == 200
    assert client.get("/health/live").status_code == 200
