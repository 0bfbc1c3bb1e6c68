"""The cart end to end through the edge: a customer fills a cart priced by the catalog, an
admin's price change reaches it through the catalog's events, and checkout turns it into one
order (with the real orders service and its saga), however often it is retried."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import pytest
from edge_helpers import Platform, wait_until
from shop import APPROVE_CARD, bearer, customer_with_address, new_product, settled

pytestmark = pytest.mark.e2e

def customer(platform: Platform, c: httpx.Client) -> tuple[dict[str, str], str]:
    """A new customer's auth header and the id of their one address."""
    auth, address_id = customer_with_address(platform, c)
    # The cart service may still be registering when the first test runs.
    wait_until(lambda: c.get("/api/cart", headers=auth).status_code == 200, 60,
               "the cart through the edge")
    return auth, address_id


def product(c: httpx.Client, admin: dict[str, str], price: str, on_hand: int = 20) -> dict:
    """A product of its own (no other test changes its price or stock), in stock."""
    return new_product(c, admin, on_hand, price=price)


def cart(c: httpx.Client, auth: dict[str, str]) -> dict:
    resp = c.get("/api/cart", headers=auth)
    assert resp.status_code == 200, resp.text
    return resp.json()


def put(c: httpx.Client, auth: dict[str, str], product_id: str, quantity: int) -> httpx.Response:
    return c.put(f"/api/cart/items/{product_id}", headers=auth, json={"quantity": quantity})


def checkout(c: httpx.Client, auth: dict[str, str], key: str, address_id: str) -> httpx.Response:
    return c.post("/api/cart/checkout", headers={**auth, "Idempotency-Key": key},
                  json={"shipping_address_id": address_id, "payment": {"card_number": APPROVE_CARD}})


def test_add_change_and_remove_items(platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        kettle, mug = product(c, admin, "39000"), product(c, admin, "12000")
        auth, _ = customer(platform, c)
        assert cart(c, auth)["items"] == []
        assert put(c, auth, kettle["id"], 2).status_code == 200
        assert put(c, auth, mug["id"], 1).status_code == 200
        resp = put(c, auth, kettle["id"], 3)
        assert resp.status_code == 200, resp.text
        doc = cart(c, auth)
        assert [(i["sku"], i["quantity"], i["unit_price"]["amount"], i["subtotal"]["amount"])
                for i in doc["items"]] == [(kettle["sku"], 3, "39000", "117000"),
                                           (mug["sku"], 1, "12000", "12000")]
        assert doc["total"] == {"amount": "129000", "currency": "KRW"}
        assert c.delete(f"/api/cart/items/{kettle['id']}", headers=auth).status_code == 204
        assert [i["sku"] for i in cart(c, auth)["items"]] == [mug["sku"]]

        unknown = put(c, auth, str(uuid.uuid4()), 1)
        assert unknown.status_code == 422
        assert unknown.headers["content-type"] == "application/problem+json"
        assert put(c, auth, mug["id"], 101).status_code == 422
        assert c.get("/api/cart").status_code == 401  # the edge wants a token


def test_a_price_change_by_an_admin_shows_up_in_the_cart(platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        kettle = product(c, admin, "39000")
        auth, _ = customer(platform, c)
        assert put(c, auth, kettle["id"], 2).status_code == 200
        changed = c.patch(f"/api/catalog/products/{kettle['id']}", headers=admin,
                          json={"price": {"amount": "35000", "currency": "KRW"}})
        assert changed.status_code == 200, changed.text
        doc = wait_until(lambda: (d := cart(c, auth))["items"][0]["unit_price"]["amount"]
                         == "35000" and d, 30, "the new price in the cart")
        assert doc["total"]["amount"] == "70000"


def test_checkout_makes_an_approved_order_and_a_retry_answers_the_same_one(
        platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        kettle = product(c, admin, "39000", on_hand=10)
        auth, address_id = customer(platform, c)
        assert put(c, auth, kettle["id"], 2).status_code == 200
        key = str(uuid.uuid4())
        resp = checkout(c, auth, key, address_id)
        assert resp.status_code == 202, resp.text
        order_id = resp.json()["order_id"]
        assert cart(c, auth)["items"] == []

        order = settled(c, auth, order_id)
        assert order["status"] == "APPROVED", order
        assert order["total"]["amount"] == "78000"
        assert [(i["product_id"], i["quantity"]) for i in order["items"]] == [
            (kettle["id"], 2)]

        again = checkout(c, auth, key, address_id)
        assert again.status_code == 202, again.text
        assert again.json()["order_id"] == order_id
        assert [o["id"] for o in c.get("/api/orders", headers=auth).json()] == [order_id]
        # A new key on the now empty cart has nothing to order.
        empty = checkout(c, auth, str(uuid.uuid4()), address_id)
        assert empty.status_code == 422 and empty.json()["reason"] == "empty_cart"


def test_customer_b_cannot_see_or_change_customer_a_cart(platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        kettle = product(c, admin, "39000")
        a_auth, _ = customer(platform, c)
        b_auth, _ = customer(platform, c)
        assert put(c, a_auth, kettle["id"], 1).status_code == 200
        assert cart(c, b_auth)["items"] == []
        assert kettle["id"] not in c.get("/api/cart", headers=b_auth).text
        assert c.delete(f"/api/cart/items/{kettle['id']}", headers=b_auth).status_code == 204
        assert [i["product_id"] for i in cart(c, a_auth)["items"]] == [kettle["id"]]


def test_ten_concurrent_identical_checkouts_make_one_order(platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        kettle = product(c, admin, "39000", on_hand=10)
        auth, address_id = customer(platform, c)
        assert put(c, auth, kettle["id"], 1).status_code == 200
        key = str(uuid.uuid4())

        def attempt(_: int) -> httpx.Response:
            with platform.client() as own:  # one connection each: really concurrent
                return checkout(own, auth, key, address_id)

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(attempt, range(10)))
        assert [a.status_code for a in answers] == [202] * 10, [a.text for a in answers]
        order_ids = {a.json()["order_id"] for a in answers}
        assert len(order_ids) == 1
        assert [o["id"] for o in c.get("/api/orders", headers=auth).json()] == list(order_ids)
        assert settled(c, auth, order_ids.pop())["status"] == "APPROVED"
        assert cart(c, auth)["items"] == []
