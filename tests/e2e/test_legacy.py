"""The legacy monolith under the runtime: `mercato up --with legacy` starts it beside the
services (here only catalog, to keep the start short), `mercato legacy seed` fills it, and
an order goes through its /shop API in one transaction, with the outbox recording it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import asyncpg
import httpx2 as httpx
import pytest
from edge_helpers import mercato, processes_of, scratch_home, wait_until
from mercato.runtime.paths import Home, free_port
from mercato.runtime.postgres import Postgres

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def legacy_home() -> Iterator[Home]:
    home = scratch_home("mercato-legacy-e2e-")
    started = mercato(home, "up", "--detach", "--port", str(free_port()), "--service",
                      "catalog", "--with", "legacy", "--no-telemetry", timeout=180, check=False)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield Home(home)
    finally:
        mercato(home, "down", timeout=120, check=False)
        wait_until(lambda: not processes_of(home), 20, "no mercato process left after down")


def test_an_order_through_the_monolith(legacy_home: Home) -> None:
    status = json.loads(mercato(legacy_home.root, "status", "--json").stdout)
    row = next(p for p in status["processes"] if p["process"] == "legacy")
    assert (row["state"], row["health"]) == ("ready", "ok")
    shop_url = status["urls"]["legacy"]

    seeded = mercato(legacy_home.root, "legacy", "seed", "--customers", "40", "--products",
                     "25", "--orders", "200", timeout=120, check=False)
    assert seeded.returncode == 0, seeded.stderr
    assert "seeded" in seeded.stderr

    with httpx.Client(base_url=shop_url.removesuffix("/shop"), timeout=30) as c:
        products = c.get("/shop/products", params={"page_size": 100}).json()
        assert products["total"] > 0
        product = next(p for p in products["items"] if p["in_stock"] > 0)
        email = f"e2e-{uuid.uuid4().hex[:8]}@example.com"
        assert c.post("/shop/register", json={"email": email, "password": "e2e-password-1",
                                              "name": "E2E"}).status_code == 201
        token = c.post("/shop/login", json={"email": email,
                                            "password": "e2e-password-1"}).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        address = c.post("/shop/addresses", headers=auth, json={
            "recipient": "E2E", "line1": "1 Test-ro", "city": "Seoul",
            "postal_code": "04100"}).json()
        r = c.post("/shop/checkout", headers={**auth, "Idempotency-Key": "e2e-1"}, json={
            "address_id": address["id"], "card_number": "4242424242424242",
            "items": [{"product_id": product["id"], "quantity": 1}]})
        assert r.status_code == 201, r.text
        order = r.json()
        assert order["status"] == "PAID" and order["payment"]["status"] == "CAPTURED"
        assert c.get(f"/shop/products/{product['id']}").json()["in_stock"] == \
            product["in_stock"] - 1
        assert [o["id"] for o in c.get("/shop/orders", headers=auth).json()["items"]] == \
            [order["id"]]
        assert 'route="/shop/checkout"' in c.get("/metrics").text

    async def outbox() -> list[asyncpg.Record]:
        url = Postgres(legacy_home, legacy_home.ports().postgres).service_database_url("legacy")
        assert url is not None
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            return list(await conn.fetch("SELECT table_name, op FROM legacy_outbox "
                                         "WHERE txid = (SELECT txid FROM legacy_outbox WHERE "
                                         "table_name = 'orders' AND row_id = $1 LIMIT 1)",
                                         str(order["id"])))
        finally:
            await conn.close()

    # The order and its stock change were recorded in the checkout's own transaction.
    changes = {(r["table_name"], r["op"]) for r in asyncio.run(outbox())}
    assert {("orders", "INSERT"), ("stock", "UPDATE")} <= changes
