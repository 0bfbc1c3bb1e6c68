"""GraphQL at /api/graphql through the edge: queries and mutations, one catalog call for a
page of products, depth and cost limits, and the services' authorization (a customer cannot
read another customer's order)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx2 as httpx
import pytest
from edge_helpers import Platform, wait_until
from shop import bearer, customer_with_address, new_product
from storefront_kit import Shopper, csrf_of

pytestmark = pytest.mark.e2e


def gql(c: httpx.Client, query: str, variables: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None) -> dict[str, Any]:
    answer = c.post("/api/graphql", json={"query": query, "variables": variables or {}},
                    headers=headers or {})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def catalog_calls(platform: Platform) -> float:
    """How many calls the storefront made to the catalog, from its own metrics."""
    entry = platform.state()["processes"]["storefront-1"]
    text = httpx.get(f"http://127.0.0.1:{entry['port']}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("http_client_calls_total") and 'target="catalog"' in line)


PAGE = """query($size: Int!) { products(pageSize: $size) { total items { id name sku
  price { amount currency formatted } availability { known available label } } } }"""


def test_products_with_availability_in_one_catalog_and_one_inventory_call(
        platform: Platform) -> None:
    with platform.client() as c:
        before = catalog_calls(platform)
        # A page size no page of the shop asks for: the storefront keeps catalog answers
        # for their max-age, and this one must not be one it already has.
        page = gql(c, PAGE, {"size": 7})
        assert "errors" not in page, page
        items = page["data"]["products"]["items"]
        assert len(items) == 7
        assert all(i["price"]["formatted"].startswith("₩") for i in items)
        assert all(i["availability"]["known"] for i in items)
        assert catalog_calls(platform) - before == 1
        one = gql(c, "query($id: ID!) { product(id: $id) { name availability { label } } }",
                  {"id": items[0]["id"]})
        assert one["data"]["product"]["name"] == items[0]["name"]
        assert gql(c, '{ product(id: "nope") { name } }')["data"]["product"] is None


def test_cart_and_checkout_mutations_and_my_orders(platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        products = [new_product(c, admin, on_hand=10) for _ in range(2)]
        auth, address_id = customer_with_address(platform, c)
        for p in products:
            done = gql(c, "mutation($id: ID!) { setCartItem(productId: $id, quantity: 2) "
                          "{ items { quantity product { name } } total { formatted } } }",
                       {"id": p["id"]}, auth)
            assert "errors" not in done, done
        before = catalog_calls(platform)
        cart = gql(c, "{ cart { items { productId quantity product { sku name } } } }",
                   headers=auth)["data"]["cart"]
        assert sorted(i["product"]["sku"] for i in cart["items"]) == sorted(
            p["sku"] for p in products)
        assert catalog_calls(platform) - before == 1  # two lines, one batched catalog call
        key = uuid.uuid4().hex
        checkout = """mutation($key: String!, $address: ID!) { checkout(checkoutKey: $key,
            cardNumber: "4242424242424242", addressId: $address) { id status } }"""
        first = gql(c, checkout, {"key": key, "address": address_id}, auth)
        assert "errors" not in first, first
        again = gql(c, checkout, {"key": key, "address": address_id}, auth)
        assert again["data"]["checkout"]["id"] == first["data"]["checkout"]["id"]
        order_id = first["data"]["checkout"]["id"]
        mine = """{ myOrders { id status total { formatted } items { quantity product { sku } }
                   payment { status } shipment { status trackingNumber } } }"""

        def approved() -> dict[str, Any] | None:
            orders = gql(c, mine, headers=auth)["data"]["myOrders"]
            [order] = orders
            return order if order["status"] == "APPROVED" and order["shipment"] else None

        order = wait_until(approved, 60, "the order approved with its shipment")
        assert order["id"] == order_id
        assert order["shipment"]["trackingNumber"]
        # Another customer asks for it: not found, as at the orders service.
        other, _ = customer_with_address(platform, c)
        theirs = gql(c, 'query($id: ID!) { order(id: $id) { id status } }', {"id": order_id},
                     other)
        assert theirs["data"]["order"] is None
        assert gql(c, "{ myOrders { id } }", headers=other)["data"]["myOrders"] == []


def test_anonymous_callers_and_cookie_mutations_without_csrf_are_refused(
        platform: Platform) -> None:
    with platform.client() as c:
        refused = gql(c, "{ cart { total { amount } } }")
        assert refused["data"] is None
        assert "sign in first" in refused["errors"][0]["message"]
        assert c.post("/api/graphql", json={"query": "{ cart { items { quantity } } }"},
                      headers={"Authorization": "Bearer not-a-token"}).status_code == 401
        product = c.get("/api/catalog/products").json()["items"][0]
    with Shopper(platform) as s:
        s.sign_up()
        mutation = ('mutation { setCartItem(productId: "' + product["id"]
                    + '", quantity: 1) { items { quantity } } }')
        without = gql(s.http, mutation)
        assert "CSRF" in without["errors"][0]["message"]
        token = csrf_of(s.get("/").text)
        done = gql(s.http, mutation, headers={"X-CSRF-Token": token})
        assert done["data"]["setCartItem"]["items"] == [{"quantity": 1}]
        # The session cookie reads the same cart (no token needed for a query).
        assert gql(s.http, "{ cart { items { quantity } } }")["data"]["cart"]["items"]


def test_too_deep_and_too_costly_queries_are_refused_before_they_run(
        platform: Platform) -> None:
    with platform.client() as c:
        before = catalog_calls(platform)
        deepest_real = gql(c, "{ products(pageSize: 2) { items { availability { known } "
                              "price { formatted } } } }")
        assert "errors" not in deepest_real
        # A product's category has products: a client could nest without end.
        hop = "items {{ categoryDetails {{ products(pageSize: 1) {{ {} }} }} }}"
        nested = "total"
        for _ in range(3):
            nested = hop.format(nested)
        too_deep = gql(c, "{ products(pageSize: 1) { " + nested + " } }")
        assert too_deep["data"] is None
        assert "exceeds maximum operation depth" in too_deep["errors"][0]["message"]
        page = "products(pageSize: 100) { items { id name sku price { amount } "\
               "availability { label } } }"
        costly = gql(c, "{ " + " ".join(f"p{i}: {page}" for i in range(8)) + " }")
        assert costly["data"] is None
        error = costly["errors"][0]
        assert re.search(r"query cost \d+ exceeds the limit of \d+", error["message"])
        assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
        # Fragments count as what they expand to.
        via_fragment = gql(c, "query { myOrders(first: 50) { ...O } } fragment O on Order "
                              "{ id items { ...L } } fragment L on OrderLine { quantity "
                              "product { id name sku price { amount } } }")
        assert "errors" in via_fragment and via_fragment["data"] is None
        # Refused queries asked nothing of the catalog.
        assert catalog_calls(platform) - before == 1
