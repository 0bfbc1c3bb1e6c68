"""The cart API against a real PostgreSQL (embedded), without NATS, with catalog and orders
played by a tiny aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cart.app import create_app
from cart.settings import CartSettings
from cart_kit import PRODUCTS, FakeUpstreams, count
from chassis.db import Database
from chassis.testing import TokenMinter, assert_problem
from fastapi.testclient import TestClient
from sqlalchemy import text

pytestmark = pytest.mark.integration

minter = TokenMinter()
# Minted at collection: an hour, so a slow full run cannot outlive them (the default is 5 min).
TTL_S = 3600
ALICE_TOKEN = minter.token(subject="alice", roles=["customer"], ttl_s=TTL_S)
ALICE = {"Authorization": f"Bearer {ALICE_TOKEN}"}
BOB = minter.auth(["customer"], subject="bob", ttl_s=TTL_S)
ADMIN_ONLY = minter.auth(["admin"], subject="admin-1", ttl_s=TTL_S)
CHECKOUT = {"shipping_address_id": "addr-1", "payment": {"card_number": "4242424242424242"}}


@pytest.fixture
def upstreams() -> Iterator[FakeUpstreams]:
    fake = FakeUpstreams().start()
    yield fake
    fake.stop()


@pytest.fixture
def client(database_url: str, upstreams: FakeUpstreams) -> Iterator[TestClient]:
    settings = CartSettings(database_url=database_url, nats_url="", register_instance=False,
                            catalog_url=upstreams.url, orders_url=upstreams.url,
                            upstream_timeout_s=1.0, orders_timeout_s=2.0, db_pool_size=15)
    with TestClient(create_app(settings, key_source=minter.key_source()),
                    raise_server_exceptions=False) as c:
        yield c


def put(client: TestClient, product_id: str, quantity: Any, headers: dict | None = None) -> Any:
    return client.put(f"/api/cart/items/{product_id}", json={"quantity": quantity},
                      headers=headers or ALICE)


def checkout(client: TestClient, key: str | None = "k-1", body: dict | None = None,
             headers: dict | None = None) -> Any:
    h = dict(headers or ALICE)
    if key is not None:
        h["Idempotency-Key"] = key
    return client.post("/api/cart/checkout", json=body or CHECKOUT, headers=h)




def table_count(database_url: str, table: str) -> int:
    async def main() -> int:
        db = Database(database_url, pool_size=1)
        try:
            return await count(db, table)
        finally:
            await db.dispose()

    return asyncio.run(main())


def lines(client: TestClient, headers: dict | None = None) -> list[tuple[str, int, str]]:
    doc = client.get("/api/cart", headers=headers or ALICE).json()
    return [(i["product_id"], i["quantity"], i["unit_price"]["amount"]) for i in doc["items"]]


def test_a_new_customer_has_an_empty_cart(client: TestClient) -> None:
    resp = client.get("/api/cart", headers=ALICE)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"items": [], "total": {"amount": "0", "currency": "KRW"},
                           "currency": "KRW"}


def test_add_change_and_remove_items(client: TestClient, database_url: str) -> None:
    resp = put(client, "p-mug", 2)
    assert resp.status_code == 200, resp.text
    assert resp.json()["items"] == [{
        "product_id": "p-mug", "sku": "MUG-1", "name": "Mug", "quantity": 2,
        "unit_price": {"amount": "12900", "currency": "KRW"},
        "subtotal": {"amount": "25800", "currency": "KRW"}, "available": True}]
    put(client, "p-tea", 1)
    assert put(client, "p-mug", 3).status_code == 200  # sets, does not add up
    doc = client.get("/api/cart", headers=ALICE).json()
    assert [(i["product_id"], i["quantity"]) for i in doc["items"]] == [("p-mug", 3), ("p-tea", 1)]
    assert doc["total"] == {"amount": str(3 * 12900 + 3500), "currency": "KRW"}

    assert client.delete("/api/cart/items/p-mug", headers=ALICE).status_code == 204
    assert lines(client) == [("p-tea", 1, "3500")]
    # Removing is idempotent: a retried DELETE (or one of a product not in the cart) is 204.
    assert client.delete("/api/cart/items/p-mug", headers=ALICE).status_code == 204
    assert client.delete("/api/cart/items/never-there", headers=ALICE).status_code == 204
    assert table_count(database_url, "cart_items") == 1


def test_a_put_refreshes_the_price_from_the_catalog(client: TestClient,
                                                    upstreams: FakeUpstreams) -> None:
    put(client, "p-mug", 1)
    upstreams.products["p-mug"] = {**PRODUCTS["p-mug"],
                                   "price": {"amount": "9900", "currency": "KRW"}}
    put(client, "p-mug", 2)
    assert lines(client) == [("p-mug", 2, "9900")]


@pytest.mark.parametrize(("product_id", "reason"), [
    ("nope", "unknown_product"),  # the catalog does not know it
    ("p-old", "unknown_product"),  # discontinued: the catalog answers 404 for it
    ("p-usd", "product_unavailable"),  # not sold in the shop's currency
])
def test_products_that_cannot_be_ordered_are_422_and_write_nothing(
        client: TestClient, database_url: str, product_id: str, reason: str) -> None:
    doc = assert_problem(put(client, product_id, 1), 422)
    assert doc["reason"] == reason
    assert table_count(database_url, "cart_items") == 0


def test_an_inactive_product_the_catalog_still_answers_is_422(
        client: TestClient, upstreams: FakeUpstreams) -> None:
    upstreams.products["p-odd"] = {**PRODUCTS["p-mug"], "id": "p-odd", "status": "hidden"}
    assert assert_problem(put(client, "p-odd", 1), 422)["reason"] == "product_unavailable"
    assert lines(client) == []


@pytest.mark.parametrize("body", [{"quantity": 0}, {"quantity": 101}, {"quantity": "x"}, {},
                                  {"quantity": 1, "price": 1}, [1]])
def test_bad_bodies_are_422_without_calling_the_catalog(
        client: TestClient, upstreams: FakeUpstreams, database_url: str, body: Any) -> None:
    assert_problem(client.put("/api/cart/items/p-mug", json=body, headers=ALICE), 422)
    assert upstreams.hits["catalog"] == 0
    assert table_count(database_url, "cart_items") == 0


def test_a_product_id_over_200_characters_is_422(client: TestClient,
                                                 upstreams: FakeUpstreams) -> None:
    assert_problem(put(client, "p" * 201, 1), 422)
    assert upstreams.hits["catalog"] == 0


def test_catalog_unavailable_is_503_problem_and_writes_nothing(
        client: TestClient, upstreams: FakeUpstreams, database_url: str) -> None:
    upstreams.down.add("catalog")
    resp = put(client, "p-mug", 1)
    assert_problem(resp, 503)
    assert resp.headers.get("retry-after") == "2"
    assert upstreams.hits["catalog"] == 3  # the GET was retried (2 retries by default)
    assert table_count(database_url, "cart_items") == 0


def test_a_cart_holds_at_most_50_products(client: TestClient, upstreams: FakeUpstreams) -> None:
    for i in range(51):
        upstreams.products[f"p{i}"] = {**PRODUCTS["p-tea"], "id": f"p{i}", "sku": f"S-{i}"}
    for i in range(50):
        assert put(client, f"p{i}", 1).status_code == 200
    assert assert_problem(put(client, "p50", 1), 422)["reason"] == "cart_full"
    assert put(client, "p0", 5).status_code == 200  # changing a line is still fine
    assert len(lines(client)) == 50


def test_each_customer_sees_only_their_own_cart(client: TestClient) -> None:
    put(client, "p-mug", 2)
    put(client, "p-tea", 1, headers=BOB)
    assert lines(client) == [("p-mug", 2, "12900")]
    assert lines(client, BOB) == [("p-tea", 1, "3500")]
    # Bob removing "p-mug" touches only his own cart.
    assert client.delete("/api/cart/items/p-mug", headers=BOB).status_code == 204
    assert lines(client) == [("p-mug", 2, "12900")]


def test_a_token_is_required_and_the_customer_role(client: TestClient) -> None:
    resp = client.get("/api/cart")
    assert_problem(resp, 401)
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert_problem(client.get("/api/cart", headers=ADMIN_ONLY), 403)
    assert_problem(put(client, "p-mug", 1, headers=ADMIN_ONLY), 403)


def test_checkout_places_the_order_empties_the_cart_and_a_retry_gets_the_same_order(
        client: TestClient, upstreams: FakeUpstreams, database_url: str) -> None:
    put(client, "p-tea", 1)
    put(client, "p-mug", 2)
    resp = checkout(client)
    assert resp.status_code == 202, resp.text
    doc = resp.json()
    assert set(doc) == {"order_id", "status"} and doc["status"] == "PENDING"
    assert lines(client) == []

    [sent] = upstreams.order_requests
    assert sent["body"] == {"items": [{"product_id": "p-mug", "quantity": 2},
                                      {"product_id": "p-tea", "quantity": 1}],
                            **CHECKOUT}
    assert sent["headers"]["Authorization"] == f"Bearer {ALICE_TOKEN}"  # the caller's token
    derived = sent["headers"]["Idempotency-Key"]
    assert derived != "k-1" and 0 < len(derived) <= 200
    assert sent["headers"]["Mercato-Caller"] == "cart"

    again = checkout(client)
    assert again.status_code == 202, again.text
    assert again.json() == doc  # answered from the record: orders is not asked again
    assert upstreams.hits["orders"] == 1
    assert table_count(database_url, "checkouts") == 1
    # Another checkout key on the now empty cart has nothing to order.
    assert assert_problem(checkout(client, key="k-2"), 422)["reason"] == "empty_cart"


def test_the_same_key_with_another_body_is_409(client: TestClient) -> None:
    put(client, "p-mug", 1)
    assert checkout(client).status_code == 202
    other = {**CHECKOUT, "shipping_address_id": "addr-2"}
    assert_problem(checkout(client, body=other), 409)


def test_the_derived_key_is_stable_so_a_retry_after_a_lost_answer_maps_to_one_order(
        client: TestClient, upstreams: FakeUpstreams, database_url: str) -> None:
    """orders accepted the order but the cart never heard (here: it answered 503 after
    accepting, as when the answer is lost): the retried checkout sends the same key."""
    put(client, "p-mug", 1)
    upstreams.down.add("orders")
    assert_problem(checkout(client), 503)
    assert lines(client) == [("p-mug", 1, "12900")]  # nothing changed in the cart
    assert table_count(database_url, "checkouts") == 0
    upstreams.down.clear()
    assert checkout(client).status_code == 202
    keys = {r["headers"]["Idempotency-Key"] for r in upstreams.order_requests}
    assert len(keys) == 1  # every attempt, retries included, carried the same key
    assert len(upstreams.order_requests) == 4  # 3 attempts (POST with a key is retried) + 1


def test_checkout_needs_a_key_and_a_valid_body_and_a_cart(client: TestClient,
                                                          upstreams: FakeUpstreams) -> None:
    put(client, "p-mug", 1)
    for key in (None, "", "k" * 201):
        assert_problem(checkout(client, key=key), 400)
    for body in ({**CHECKOUT, "payment": {"card_number": "42"}},
                 {"payment": CHECKOUT["payment"]}, {**CHECKOUT, "coupon": "x"}):
        assert_problem(checkout(client, body=body), 422)
    assert upstreams.hits["orders"] == 0
    doc = assert_problem(checkout(client, headers=BOB), 422)  # bob's cart is empty
    assert doc["reason"] == "empty_cart"


def test_orders_refusals_are_passed_on_and_change_nothing(
        client: TestClient, upstreams: FakeUpstreams, database_url: str) -> None:
    put(client, "p-mug", 1)
    upstreams.refuse = (422, {"type": "about:blank", "title": "Unprocessable content",
                              "status": 422, "detail": "unknown address",
                              "reason": "unknown_address"})
    doc = assert_problem(checkout(client), 422)
    assert (doc["detail"], doc["reason"]) == ("unknown address", "unknown_address")
    upstreams.refuse = (409, {"title": "Conflict", "status": 409, "detail": "key reused"})
    assert assert_problem(checkout(client), 409)["detail"] == "key reused"
    assert upstreams.hits["orders"] == 2  # a 4xx is not retried
    assert lines(client) == [("p-mug", 1, "12900")]
    assert table_count(database_url, "checkouts") == 0


def test_a_discontinued_item_blocks_checkout_until_removed(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    from sqlalchemy import text

    put(client, "p-mug", 1)
    put(client, "p-tea", 2)

    async def discontinue() -> None:
        db = Database(database_url, pool_size=1)
        try:
            async with db.engine.begin() as conn:
                await conn.execute(text("UPDATE cart_items SET available = false "
                                        "WHERE product_id = 'p-mug'"))
        finally:
            await db.dispose()

    asyncio.run(discontinue())
    doc = client.get("/api/cart", headers=ALICE).json()
    assert [i["available"] for i in doc["items"]] == [False, True]
    assert doc["total"]["amount"] == "7000"  # only what can be bought
    assert assert_problem(checkout(client), 422)["reason"] == "unavailable_items"
    assert upstreams.hits["orders"] == 0
    client.delete("/api/cart/items/p-mug", headers=ALICE)
    assert checkout(client).status_code == 202


def test_ten_concurrent_identical_checkouts_make_one_order(
        client: TestClient, upstreams: FakeUpstreams, database_url: str) -> None:
    put(client, "p-mug", 1)
    upstreams.order_delay_s = 0.05  # let the checkouts overlap at orders
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: checkout(client, key="same"), range(10)))
    assert [a.status_code for a in answers] == [202] * 10, [a.text for a in answers]
    assert len({a.json()["order_id"] for a in answers}) == 1
    assert len(upstreams.orders) == 1  # orders made one order
    assert table_count(database_url, "checkouts") == 1
    assert lines(client) == []


def database_text(database_url: str) -> str:
    async def main() -> str:
        db = Database(database_url, pool_size=1)
        try:
            async with db.engine.connect() as conn:
                tables = list((await conn.execute(text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).scalars())
                dumped = []
                for table in tables:
                    rows = (await conn.execute(text(f'SELECT t::text FROM "{table}" t'))).scalars()
                    dumped += [f"{table}: {r}" for r in rows]
            return "\n".join(dumped)
        finally:
            await db.dispose()

    return asyncio.run(main())


CARD = CHECKOUT["payment"]["card_number"]


def test_a_card_is_passed_on_to_orders_and_kept_nowhere_in_the_cart(
        client: TestClient, upstreams: FakeUpstreams, database_url: str) -> None:
    put(client, "p-mug", 1)
    assert checkout(client).status_code == 202
    [sent] = upstreams.order_requests
    assert sent["body"]["payment"] == {"card_number": CARD}
    assert CARD not in database_text(database_url)


def test_checkout_with_a_payment_method_passes_it_on(
        client: TestClient, upstreams: FakeUpstreams) -> None:
    put(client, "p-mug", 1)
    body = {"shipping_address_id": "addr-1", "payment": {"payment_method_id": "pm_1"}}
    first = checkout(client, body=body)
    assert first.status_code == 202, first.text
    [sent] = upstreams.order_requests
    assert sent["body"]["payment"] == {"payment_method_id": "pm_1"}
    assert checkout(client, body=body).json() == first.json()  # a retry: the same order
    assert_problem(checkout(client, body={**body, "payment": {"payment_method_id": "pm_2"}}),
                   409)


def full_width(card: str) -> str:
    return card.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})


@pytest.mark.parametrize("payment", [
    {"card_number": full_width(CARD)}, {"card_number": "4242424242424241"},
    {"card_number": CARD, "payment_method_id": "pm_1"}, {}])
def test_a_card_that_is_not_ascii_digits_passing_luhn_is_422_and_never_sent(
        client: TestClient, upstreams: FakeUpstreams, payment: dict[str, str]) -> None:
    put(client, "p-mug", 1)
    resp = checkout(client, body={**CHECKOUT, "payment": payment})
    doc = assert_problem(resp, 422)
    assert "4242" not in str(doc.get("errors"))
    assert upstreams.hits["orders"] == 0
