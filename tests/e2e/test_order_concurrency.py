"""Orders under concurrency, through the edge: one Idempotency-Key sent ten times at once
makes one order, and 200 buyers racing for 10 units get exactly 10 of them."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from edge_helpers import Platform, mercato, wait_until
from shop import (
    all_terminal,
    bearer,
    customer_with_address,
    customers,
    net_captured,
    new_product,
    order_body,
    place_until_accepted,
    read,
    settled,
    stock_of,
)

pytestmark = pytest.mark.e2e


def at_once(count: int, send: Any) -> list[Any]:
    """Run ``send(i)`` in ``count`` threads released together by a barrier."""
    barrier = threading.Barrier(count)

    def go(i: int) -> Any:
        barrier.wait(timeout=60)
        return send(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(go, range(count)))


@pytest.mark.timeout(180)
def test_ten_concurrent_posts_with_one_key_make_one_order(platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = new_product(c, admin, on_hand=5)
        auth, address_id = customer_with_address(platform, c)
    key, body = str(uuid.uuid4()), order_body(product, address_id)

    def post(_: int) -> tuple[int, str]:
        with platform.client() as c:
            resp = c.post("/api/orders", headers={**auth, "Idempotency-Key": key}, json=body,
                          timeout=30)
            return resp.status_code, resp.text if resp.status_code != 202 else resp.json()["id"]

    answers = at_once(10, post)
    assert [code for code, _ in answers] == [202] * 10, answers
    ids = {order_id for _, order_id in answers}
    assert len(ids) == 1, answers
    (order_id,) = ids
    with platform.client() as c:
        assert [o["id"] for o in read(c, "/api/orders", auth)] == [order_id]
        # One saga ran: one unit left the stock, and the order is approved once.
        assert settled(c, auth, order_id)["status"] == "APPROVED"
        stock = wait_until(lambda: (s := stock_of(c, product["sku"]))["reserved"] == 0 and s,
                           30, "the reservation to be committed")
        assert (stock["on_hand"], stock["available"]) == (4, 4), stock
        assert [o["id"] for o in read(c, "/api/orders", auth)] == [order_id]


@pytest.mark.timeout(300)
def test_200_buyers_for_10_units_make_exactly_10_orders_approved(platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = new_product(c, admin, on_hand=10)
    buyers = customers(platform, 200)
    assert len({auth["Authorization"] for auth, _ in buyers}) == 200

    first_answers: list[int] = []

    def buy(i: int) -> str:
        auth, address_id = buyers[i]
        # Under this burst some POSTs time out at the edge (2 cores for everything): the
        # client retries those with the same Idempotency-Key, as a real one would.
        return place_until_accepted(platform, auth, order_body(product, address_id),
                                    first_answers=first_answers)

    ids = at_once(200, buy)
    assert len(set(ids)) == 200
    print(f"first answers to the 200 POSTs (0: none): {sorted(Counter(first_answers).items())}")

    with platform.client() as c:
        orders = all_terminal(c, admin, ids, timeout=120)
        by_status: dict[str, list[dict]] = {}
        for order in orders.values():
            by_status.setdefault(order["status"], []).append(order)
        counts = {status: len(found) for status, found in by_status.items()}
        assert counts == {"APPROVED": 10, "REJECTED": 190}, counts
        reasons = {o["reason"] for o in by_status["REJECTED"]}
        assert reasons == {"insufficient_stock"}, reasons

        stock = wait_until(lambda: (s := stock_of(c, product["sku"]))["reserved"] == 0 and s,
                           30, "every reservation committed or released")
        assert (stock["on_hand"], stock["available"]) == (0, 0), stock
        for order in by_status["APPROVED"]:
            assert net_captured(c, admin, order["id"]) == Decimal(order["total"]["amount"])
        # Retries under load made no second order: each buyer has exactly theirs.
        for (auth, _), order_id in zip(buyers, ids, strict=True):
            assert [o["id"] for o in read(c, "/api/orders", auth)] == [order_id]

    checked = mercato(platform.home, "check", check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "all invariants hold" in checked.stdout
