"""The shop working end to end through the edge: a customer orders, the saga runs across
inventory, payments and shipping, and notifications and the read model follow."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from edge_helpers import Platform, wait_until
from shop import (
    bearer,
    customer_with_address,
    new_product,
    payment_method,
    place,
    settled,
    stocked_product,
)

pytestmark = pytest.mark.e2e

APPROVE, DECLINE = "4242424242424242", "4000000000000002"


def test_happy_path_order_is_approved_everywhere(platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = stocked_product(c, admin, on_hand=50)
        auth, address_id = customer_with_address(platform, c)
        order_id = place(c, auth, product, address_id, APPROVE)
        order = settled(c, auth, order_id)
        assert order["status"] == "APPROVED", order
        assert order["total"]["amount"] == product["price"]["amount"]

        stock = wait_until(lambda: (s := c.get(f"/api/inventory/stock/{product['sku']}").json())
                           ["on_hand"] == 49 and s, 30, "the reservation to be committed")
        assert stock["reserved"] == 0
        payment = c.get(f"/api/payments/payments/pay-{order_id}", headers=admin).json()
        assert payment["status"] == "CAPTURED"
        shipments = c.get("/api/shipping/shipments", params={"order_id": order_id},
                          headers=auth).json()
        items = shipments["items"] if isinstance(shipments, dict) else shipments
        assert len(items) == 1 and items[0]["status"] in ("CREATED", "DISPATCHED")
        history = wait_until(
            lambda: (h := c.get(f"/api/history/orders/{order_id}", headers=auth)).status_code
            == 200 and h.json()["status"] == "APPROVED" and h.json(), 30, "the history row")
        assert history["payment_status"] == "CAPTURED"

        def mails() -> set[str]:
            found = c.get("/api/notifications/notifications", params={"order_id": order_id},
                          headers=admin).json()
            rows = found["items"] if isinstance(found, dict) else found
            return {n["kind"] for n in rows if n["status"] == "sent"}

        wait_until(lambda: {"order_placed", "order_approved"} <= mails(), 30,
                   "one sent email per kind")


def test_declined_card_is_rejected_with_stock_released(platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = stocked_product(c, admin, on_hand=20)
        auth, address_id = customer_with_address(platform, c)
        order = settled(c, auth, place(c, auth, product, address_id, DECLINE))
        assert order["status"] == "REJECTED" and order["reason"] == "card_declined", order
        stock = wait_until(lambda: (s := c.get(f"/api/inventory/stock/{product['sku']}").json())
                           ["reserved"] == 0 and s, 30, "the reservation to be released")
        assert stock["on_hand"] == 20 and stock["available"] == 20


def test_customer_b_cannot_read_customer_a_order(platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = stocked_product(c, admin, on_hand=10)
        a_auth, address_id = customer_with_address(platform, c)
        b_auth, _ = customer_with_address(platform, c)
        order_id = place(c, a_auth, product, address_id, APPROVE)
        assert c.get(f"/api/orders/{order_id}", headers=b_auth).status_code == 404
        assert c.get(f"/api/history/orders/{order_id}", headers=b_auth).status_code == 404
        assert order_id not in str(c.get("/api/orders", headers=b_auth).json())


@pytest.mark.parametrize(("card", "reason"), [("4000000000009995", "insufficient_funds"),
                                              ("4000000000000119", "provider_timeout")])
def test_payment_failures_are_rejected_with_no_charge(platform: Platform, card: str,
                                                      reason: str) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = stocked_product(c, admin, on_hand=5)
        auth, address_id = customer_with_address(platform, c)
        order_id = place(c, auth, product, address_id, card)
        order = settled(c, auth, order_id)
        assert order["status"] == "REJECTED" and order["reason"] == reason, order
        ledger = c.get("/api/payments/ledger", params={"order_id": order_id},
                       headers=admin).json()
        assert ledger["net_captured"] in ("0", "0.00", 0), ledger
        wait_until(lambda: c.get(f"/api/inventory/stock/{product['sku']}").json()["reserved"]
                   == 0, 30, "the reservation to be released")


def test_out_of_stock_is_rejected_without_touching_payment(platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = stocked_product(c, admin, on_hand=0)
        auth, address_id = customer_with_address(platform, c)
        order_id = place(c, auth, product, address_id, APPROVE)
        order = settled(c, auth, order_id)
        assert order["status"] == "REJECTED" and order["reason"] == "insufficient_stock", order
        assert c.get(f"/api/payments/payments/pay-{order_id}", headers=admin).status_code == 404


def test_history_rebuild_reproduces_the_read_model(platform: Platform) -> None:
    import json

    from edge_helpers import mercato

    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        before = c.get("/api/history/orders", params={"page_size": 100}, headers=admin).json()
        result = mercato(platform.home, "history", "rebuild", timeout=120)
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["rows"] >= before["total"] > 0
        after = c.get("/api/history/orders", params={"page_size": 100}, headers=admin).json()
        key = lambda page: sorted((o["id"], o["status"]) for o in page["items"])  # noqa: E731
        assert key(after) == key(before)


def test_mercato_check_passes_and_catches_a_violation(platform: Platform) -> None:
    """After the orders above, every invariant holds; a reservation held for a rejected
    order (put there by hand) is reported with a non-zero exit."""
    import asyncio
    import json

    import asyncpg
    from edge_helpers import mercato

    ok = mercato(platform.home, "check")
    assert "all invariants hold" in ok.stdout
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = stocked_product(c, admin, on_hand=5)
        auth, address_id = customer_with_address(platform, c)
        order_id = place(c, auth, product, address_id, DECLINE)
        assert settled(c, auth, order_id)["status"] == "REJECTED"
    secrets = json.loads((platform.home / "secrets" / "postgres.json").read_text())
    port = platform.state()["ports"]["postgres"]

    async def set_status(status: str) -> None:
        conn = await asyncpg.connect(host="127.0.0.1", port=port, user=secrets["user"],
                                     password=secrets["password"], database="inventory")
        try:
            await conn.execute("UPDATE reservations SET status = $1 WHERE reservation_id = $2",
                               status, order_id)
        finally:
            await conn.close()

    asyncio.run(set_status("reserved"))
    try:
        bad = mercato(platform.home, "check", "--json", check=False)
        assert bad.returncode == 1
        violations = json.loads(bad.stdout)["violations"]
        assert [v["subject"] for v in violations] == [order_id]
    finally:
        asyncio.run(set_status("released"))
    assert mercato(platform.home, "check").returncode == 0


def test_an_order_of_fifty_lines_is_approved(platform: Platform) -> None:
    """The most lines an order may have. Prices come from the catalog in one call: a call
    per line made any order of 33 or more lines meet orders' own bulkhead (503)."""
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))

        def stocked(i: int) -> dict:
            with platform.client() as own:
                return new_product(own, admin, on_hand=3, price=str(1000 + i))

        with ThreadPoolExecutor(8) as pool:
            products = list(pool.map(stocked, range(50)))
        auth, address_id = customer_with_address(platform, c)
        method = payment_method(c, auth, APPROVE)
        resp = c.post("/api/orders", headers={**auth, "Idempotency-Key": "fifty-lines"}, json={
            "items": [{"product_id": p["id"], "quantity": 2} for p in products],
            "shipping_address_id": address_id, "payment": {"payment_method_id": method["id"]}})
        assert resp.status_code == 202, resp.text
        order = settled(c, auth, resp.json()["id"])
        assert order["status"] == "APPROVED", order
        assert len(order["items"]) == 50
        assert order["total"]["amount"] == str(2 * sum(1000 + i for i in range(50)))
        for p in (products[0], products[-1]):
            wait_until(lambda sku=p["sku"]: (s := c.get(f"/api/inventory/stock/{sku}").json())
                       ["on_hand"] == 1 and s["reserved"] == 0, 30,
                       "the reservation to be committed")
