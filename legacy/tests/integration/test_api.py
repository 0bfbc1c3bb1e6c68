"""The shop's API against a real PostgreSQL and the real payment provider simulator. One
database for the module (migrating one per test cost more than the tests): each test works
on its own customers and products."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from legacy.migrate import upgrade_to_head
from legacy_kit import APPROVE, DECLINE, client, orders_of, sign_up, sql, stocked_product

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def database_url(pg_server) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = pg_server.create_database(name)
    upgrade_to_head(url)
    try:
        yield url
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def c(database_url: str, provider_url: str) -> Iterator[TestClient]:
    with client(database_url, provider_url) as tc:
        yield tc


def is_problem(r, status: int) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == status


def checkout(c: TestClient, who: dict[str, str], card: str = APPROVE, *, key: str | None = None,
             items: list[dict[str, int]] | None = None):  # type: ignore[no-untyped-def]
    body: dict[str, object] = {"address_id": int(who["address_id"]), "card_number": card}
    if items is not None:
        body["items"] = items
    return c.post("/shop/checkout", json=body,
                  headers={"Authorization": who["Authorization"],
                           "Idempotency-Key": key or str(uuid.uuid4())})


def test_accounts_sessions_and_refusals(c: TestClient) -> None:
    who = sign_up(c, "ann@example.com")
    me = c.get("/shop/me", headers={"Authorization": who["Authorization"]})
    assert me.json()["email"] == "ann@example.com"
    is_problem(c.post("/shop/register", json={"email": "ANN@example.com", "password":
                                              "whatever-123", "name": "x"}), 409)
    is_problem(c.post("/shop/login", json={"email": "ann@example.com", "password": "nope-nope"}),
               401)
    c.cookies.clear()  # the login in sign_up set the session cookie
    is_problem(c.get("/shop/me"), 401)
    is_problem(c.get("/shop/me", headers={"Authorization": "Bearer forged"}), 401)
    is_problem(c.post("/shop/register", content=b"{not json",
                      headers={"content-type": "application/json"}), 422)
    is_problem(c.post("/shop/register", json={"email": "x@y.example", "password": "short",
                                              "name": "x"}), 422)
    is_problem(c.post("/shop/register", json={"email": "n@y.example", "password": "long-enough",
                                              "name": "nul\u0000name"}), 422)
    is_problem(c.get("/shop/products", params={"q": "a\x00b"}), 422)
    # The cookie set at login authenticates too; logout ends the session.
    c.post("/shop/login", json={"email": "ann@example.com", "password": "correct horse battery"})
    assert c.get("/shop/me").status_code == 200
    assert c.post("/shop/logout").status_code == 204
    is_problem(c.get("/shop/me"), 401)


def test_catalog_reads(c: TestClient, database_url: str) -> None:
    name = f"Pan {uuid.uuid4().hex[:8]}"
    pid = stocked_product(database_url, on_hand=4, price="12500", name=name)
    listing = c.get("/shop/products", params={"q": name, "page_size": 5}).json()
    assert listing["total"] == 1 and listing["items"][0]["id"] == pid
    one = c.get(f"/shop/products/{pid}").json()
    assert one["price"] == {"amount": "12500.00", "currency": "KRW"} and one["in_stock"] == 4
    assert one["category"]["name"] in [x["name"] for x in c.get("/shop/categories").json()]
    is_problem(c.get("/shop/products/999999"), 404)
    is_problem(c.get(f"/shop/products/{2**70}"), 404)
    is_problem(c.get("/shop/products", params={"page_size": 1000}), 422)


def test_checkout_from_the_cart_commits_order_payment_shipment_and_stock(
        c: TestClient, database_url: str) -> None:
    pid = stocked_product(database_url, on_hand=5, price="10000")
    who = sign_up(c, "bo@example.com")
    auth = {"Authorization": who["Authorization"]}
    assert c.put(f"/shop/cart/lines/{pid}", json={"quantity": 2}, headers=auth).status_code == 200
    assert c.get("/shop/cart", headers=auth).json()["total"]["amount"] == "20000.00"
    r = checkout(c, who)
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "PAID" and order["total"]["amount"] == "20000.00"
    assert order["payment"] == {"status": "CAPTURED", "card_last4": "4242"}
    assert order["shipment"]["status"] == "READY"
    assert sql(database_url, "SELECT on_hand FROM stock WHERE product_id = $1", pid)[0][0] == 3
    assert c.get("/shop/cart", headers=auth).json()["lines"] == []
    history = c.get("/shop/orders", headers=auth).json()
    assert [o["id"] for o in history["items"]] == [order["id"]]
    # Someone else's order does not exist for them.
    other = sign_up(c, "cy@example.com")
    is_problem(c.get(f"/shop/orders/{order['id']}",
                     headers={"Authorization": other["Authorization"]}), 404)
    is_problem(checkout(c, who), 422)  # the cart is empty now


def test_declined_card_writes_nothing(c: TestClient, database_url: str) -> None:
    pid = stocked_product(database_url, on_hand=5)
    who = sign_up(c, "dee@example.com")
    r = checkout(c, who, DECLINE, items=[{"product_id": pid, "quantity": 1}])
    is_problem(r, 402)
    assert orders_of(database_url, "dee@example.com") == 0
    assert sql(database_url, "SELECT count(*) FROM order_lines WHERE product_id = $1",
               pid)[0][0] == 0
    assert sql(database_url, "SELECT on_hand FROM stock WHERE product_id = $1", pid)[0][0] == 5


def test_a_charge_answered_too_late_is_found_by_its_key(c: TestClient, database_url: str) -> None:
    # This card's charge is recorded (declined) at once but answered after 3 s, past the
    # shop's 1 s timeout: the outcome comes from looking the key up, not from charging again.
    pid = stocked_product(database_url, on_hand=5)
    who = sign_up(c, "hal@example.com")
    r = checkout(c, who, "4000000000000119", items=[{"product_id": pid, "quantity": 1}])
    is_problem(r, 402)
    assert orders_of(database_url, "hal@example.com") == 0


def test_a_retried_checkout_is_one_order_and_one_charge(
        c: TestClient, database_url: str, provider_url: str) -> None:
    import urllib.request

    from legacy_kit import PROVIDER_TOKEN

    pid = stocked_product(database_url, on_hand=5)
    who = sign_up(c, "eve@example.com")
    items = [{"product_id": pid, "quantity": 1}]
    first = checkout(c, who, key="retry-1", items=items)
    again = checkout(c, who, key="retry-1", items=items)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert orders_of(database_url, "eve@example.com") == 1
    assert sql(database_url, "SELECT on_hand FROM stock WHERE product_id = $1", pid)[0][0] == 4
    customer = sql(database_url, "SELECT id FROM customers WHERE email = 'eve@example.com'")[0][0]
    req = urllib.request.Request(
        f"{provider_url}/charges?idempotency_key=legacy-checkout:{customer}:retry-1",
        headers={"Authorization": f"Bearer {PROVIDER_TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        import json

        charges = json.loads(resp.read())["items"]
    assert len(charges) == 1 and charges[0]["attempts"] == 1


def test_out_of_stock_and_bad_checkouts_are_4xx(c: TestClient, database_url: str) -> None:
    pid = stocked_product(database_url, on_hand=1)
    who = sign_up(c, "fay@example.com")
    is_problem(checkout(c, who, items=[{"product_id": pid, "quantity": 2}]), 409)
    is_problem(checkout(c, who, items=[{"product_id": 424242, "quantity": 1}]), 422)
    is_problem(checkout(c, who, "4242424242424241", items=[{"product_id": pid, "quantity": 1}]),
               422)  # fails the Luhn check at the provider
    bad = c.post("/shop/checkout", json={"address_id": 999999, "card_number": APPROVE,
                                         "items": [{"product_id": pid, "quantity": 1}]},
                 headers={"Authorization": who["Authorization"]})
    is_problem(bad, 422)
    assert orders_of(database_url, "fay@example.com") == 0


def test_admin_edits_products_and_stock(c: TestClient, database_url: str) -> None:
    pid = stocked_product(database_url, on_hand=1)
    customer = sign_up(c, "gil@example.com")
    is_problem(c.patch(f"/shop/admin/products/{pid}", json={"price": "1"},
                       headers={"Authorization": customer["Authorization"]}), 403)
    admin = sign_up(c, "boss@example.com", admin_url=database_url)
    auth = {"Authorization": admin["Authorization"]}
    r = c.patch(f"/shop/admin/products/{pid}", json={"price": "19900", "name": "Wok"},
                headers=auth)
    assert r.status_code == 200 and r.json()["price"]["amount"] == "19900.00"
    assert c.put(f"/shop/admin/stock/{pid}", json={"on_hand": 7}, headers=auth).status_code == 200
    assert c.get(f"/shop/products/{pid}").json()["in_stock"] == 7
    is_problem(c.patch(f"/shop/admin/products/{pid}", json={"price": "-1"}, headers=auth), 422)
    is_problem(c.patch("/shop/admin/products/999999", json={"name": "x"}, headers=auth), 404)
    is_problem(c.patch(f"/shop/admin/products/{pid}", json={"category_id": 999999},
                       headers=auth), 422)
    cat = c.post("/shop/admin/categories", json={"name": "Tea"}, headers=auth)
    assert cat.status_code == 201
    is_problem(c.post("/shop/admin/categories", json={"name": "Tea"}, headers=auth), 409)
    made = c.post("/shop/admin/products", headers=auth, json={
        "sku": "TEA-1", "name": "Green tea", "category_id": cat.json()["id"], "price": "8000"})
    assert made.status_code == 201 and made.json()["in_stock"] == 0
    is_problem(c.post("/shop/admin/products", headers=auth, json={
        "sku": "TEA-1", "name": "Again", "category_id": cat.json()["id"], "price": "1"}), 409)


def test_health_and_metrics(c: TestClient) -> None:
    assert c.get("/health/live").json() == {"status": "ok"}
    assert c.get("/health/ready").json()["checks"] == {"database": "ok"}
    c.get("/shop/products")
    text = c.get("/metrics").text
    assert 'http_requests_total{method="GET",route="/shop/products",service="legacy",status="200"}' in text
