"""Cart, checkout and order history moved through the edge (ADR 0035), with every service and
the monolith (`mercato up --with legacy`).

A customer of the monolith (copied to identity as the customer sync would: the same email
and password on both sides, the monolith's ``services_id`` pointed at identity's account and
address) has a cart at the monolith. Then:

1. cart shifted to 100 %: their first cart request through the edge answers the monolith's
   lines from the services' cart, and the monolith's cart is empty;
2. checkout at 50 %, history at 100 %: a checkout of a shifted bucket is a services order
   (201), its replay with the same Idempotency-Key the same order (200) and one charge;
3. a checkout of a bucket still on the monolith, with the cart on the services, is a
   monolith order of the services' cart's lines, and those lines leave the services' cart;
4. the history lists both orders, newest first.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from edge_helpers import (
    Platform,
    mercato,
    provider_charges,
    running_platform,
    scratch_home,
    wait_until,
)
from mercato.migration.buckets import HEADER
from mercato.migration.ids import services_id
from mercato.migration.routes import SERVED_BY
from mercato.migration.shopping import SERVICES_ORDER_BASE
from mercato.runtime.paths import Home
from mercato.runtime.postgres import Postgres

pytestmark = pytest.mark.e2e

PASSWORD = "e2e-password-1"
CARD = "4242424242424242"


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    home = scratch_home("mercato-shopping-bridge-e2e-")
    with running_platform(home, "--with", "legacy", "--no-telemetry") as p:
        seeded = mercato(home, "legacy", "seed", "--customers", "5", "--products", "6",
                         "--orders", "5", timeout=120, check=False)
        assert seeded.returncode == 0, seeded.stderr
        done = mercato(home, "migrate", "backfill", "catalog", timeout=300, check=False)
        assert done.returncode == 0, (done.stdout, done.stderr)
        yield p


def legacy_sql(p: Platform, query: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        home = Home(p.home)
        url = Postgres(home, home.ports().postgres).service_database_url("legacy")
        assert url is not None
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def migrate(p: Platform, *args: str) -> None:
    done = mercato(p.home, "migrate", *args, timeout=60, check=False)
    assert done.returncode == 0, (done.stdout, done.stderr)


def test_cart_checkout_and_history_across_both_sides(platform: Platform) -> None:
    email = f"shop-{uuid.uuid4().hex[:8]}@example.com"
    rows = legacy_sql(platform, "SELECT p.id, p.sku, s.on_hand FROM products p "
                      "JOIN stock s ON s.product_id = p.id WHERE p.active "
                      "ORDER BY p.id LIMIT 2")
    (p1, sku1, _), (p2, sku2, _) = rows
    legacy_sql(platform, "UPDATE stock SET on_hand = 100 WHERE product_id = ANY($1::bigint[])",
               [p1, p2])
    with platform.client() as c:
        admin = {"Authorization": f"Bearer {platform.admin_token(c)}"}
        for sku in (sku1, sku2):
            wait_until(lambda s=sku: c.get(f"/api/inventory/stock/{s}").status_code == 200,
                       60, "the stock row of a backfilled product")
            assert c.put(f"/api/inventory/stock/{sku}", json={"on_hand": 100},
                         headers=admin).status_code == 200
        # The customer at the monolith: a session, an address, a cart.
        assert c.post("/shop/register", json={"email": email, "password": PASSWORD,
                                               "name": "Cy"}).status_code == 201
        session = {"Authorization": "Bearer " + c.post("/shop/login", json={
            "email": email, "password": PASSWORD}).json()["token"]}
        address = c.post("/shop/addresses", headers=session, json={
            "recipient": "Cy", "line1": "1 Test-ro", "city": "Seoul",
            "postal_code": "04100"}).json()["id"]
        r = c.put(f"/shop/cart/lines/{p1}", headers=session, json={"quantity": 2})
        assert r.status_code == 200 and r.headers[SERVED_BY] == "legacy", r.text
        # Identity's copy of the account and of the address (what the sync leaves).
        assert c.post("/api/identity/register", json={"email": email, "password": PASSWORD,
                                                      "name": "Cy"}).status_code == 201
        access = c.post("/api/identity/token", data={
            "grant_type": "password", "username": email,
            "password": PASSWORD}).json()["access_token"]
        token = {"Authorization": f"Bearer {access}"}
        account = c.get("/api/identity/me", headers=token).json()["id"]
        their_address = c.post("/api/identity/me/addresses", headers=token, json={
            "name": "Cy", "line1": "1 Test-ro", "city": "Seoul", "postal_code": "04100",
            "country": "KR"}).json()["id"]
        legacy_sql(platform, "UPDATE customers SET services_id = $1::uuid WHERE email = $2",
                   account, email)
        legacy_sql(platform, "UPDATE addresses SET services_id = $1::uuid WHERE id = $2",
                   their_address, address)

        # 1. The cart moves.
        migrate(platform, "shift", "identity", "--percent", "100")
        migrate(platform, "shift", "cart", "--percent", "100")
        r = c.get("/shop/cart", headers=session)
        assert r.status_code == 200 and r.headers[SERVED_BY] == "services", r.text
        assert [(line["product_id"], line["quantity"]) for line in r.json()["lines"]] == [(p1, 2)]
        assert legacy_sql(platform, "SELECT l.* FROM cart_lines l JOIN carts c "
                          "ON c.id = l.cart_id JOIN customers u ON u.id = c.customer_id "
                          "WHERE u.email = $1", email) == []
        cart = c.get("/api/cart", headers=token).json()
        assert [(i["product_id"], i["quantity"]) for i in cart["items"]] == [
            (str(services_id("products", p1)), 2)]

        # 2. A checkout of a shifted bucket: a services order, once.
        migrate(platform, "shift", "history", "--percent", "100")
        migrate(platform, "shift", "checkout", "--percent", "50")
        key = {"Idempotency-Key": f"e2e-{uuid.uuid4()}", HEADER: "10"}
        body = {"address_id": address, "card_number": CARD}
        charges = len(provider_charges(platform))
        r = c.post("/shop/checkout", headers={**session, **key}, json=body, timeout=30)
        assert r.status_code == 201 and r.headers[SERVED_BY] == "services", r.text
        first = r.json()
        assert first["id"] >= SERVICES_ORDER_BASE and first["status"] == "PAID"
        assert [(line["product_id"], line["quantity"]) for line in first["lines"]] == [(p1, 2)]
        again = c.post("/shop/checkout", headers={**session, **key}, json=body, timeout=30)
        assert again.status_code == 200 and again.json()["id"] == first["id"], again.text
        orders = c.get("/api/orders", headers=token).json()
        orders = orders["items"] if isinstance(orders, dict) else orders
        assert [o["id"] for o in orders] == [first["services_id"]]
        assert len(provider_charges(platform)) == charges + 1  # one order, one charge
        assert c.get("/api/cart", headers=token).json()["items"] == []

        # 3. Cart on the services, checkout on the monolith: an order of those lines.
        r = c.put(f"/shop/cart/lines/{p2}", headers=session, json={"quantity": 3})
        assert r.status_code == 200 and r.headers[SERVED_BY] == "services", r.text
        key = {"Idempotency-Key": f"e2e-{uuid.uuid4()}", HEADER: "70"}
        r = c.post("/shop/checkout", headers={**session, **key}, json=body, timeout=30)
        assert r.status_code == 201 and r.headers[SERVED_BY] == "legacy", r.text
        second = r.json()
        assert second["id"] < SERVICES_ORDER_BASE
        assert [(line["product_id"], line["quantity"]) for line in second["lines"]] == [(p2, 3)]
        assert c.get("/api/cart", headers=token).json()["items"] == []
        again = c.post("/shop/checkout", headers={**session, **key}, json=body, timeout=30)
        assert again.status_code == 200 and again.json()["id"] == second["id"], again.text
        assert len(provider_charges(platform)) == charges + 2
        assert len(legacy_sql(platform, "SELECT o.id FROM orders o JOIN customers u ON "
                              "u.id = o.customer_id WHERE u.email = $1", email)) == 1

        # 4. The history shows both, newest first.
        def both() -> list[int] | None:
            r = c.get("/shop/orders", headers=session)
            assert r.status_code == 200 and r.headers[SERVED_BY] == "services", r.text
            got = [o["id"] for o in r.json()["items"]]
            return got if len(got) == 2 else None

        assert wait_until(both, 30, "both orders in the history") == [second["id"], first["id"]]
        one = c.get(f"/shop/orders/{first['id']}", headers=session)
        assert one.status_code == 200 and one.json()["services_id"] == first["services_id"]
