"""Chaos through the edge: a service of the order saga is killed with SIGKILL while orders
are in flight. The supervisor restarts it, every order still reaches a terminal state within
60 s, money and stock add up per order, and `mercato check` passes."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import psutil
import pytest
from edge_helpers import Platform, mercato, wait_until
from shop import (
    all_terminal,
    bearer,
    customers,
    net_captured,
    new_product,
    order_body,
    place_until_accepted,
    read,
    stock_of,
)

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

ORDERS_IN_FLIGHT = 100
ON_HAND = 1000
KILL_AFTER_ACCEPTED = 30
TERMINAL_WITHIN_S = 60


def kill_9(platform: Platform, instance: str) -> dict:
    """SIGKILL one service instance, found by name in the runtime's state; returns its entry
    as it was. The pid is checked with psutil first: it must be that service's own process
    of this platform home, not a reused pid."""
    before = platform.state()["processes"][instance]
    assert before["state"] == "ready" and before["pid"], before
    proc = psutil.Process(before["pid"])
    # Joined: a service forked by the zygote has its title as one string (runtime/zygote.py).
    assert " ".join(proc.cmdline()).split()[-2:] == ["-m", before["service"]], proc.cmdline()
    assert proc.environ().get("MERCATO_RUNTIME_HOME") == str(platform.home)
    os.kill(before["pid"], signal.SIGKILL)
    return before


def wait_restarted(platform: Platform, instance: str, before: dict, api: str) -> None:
    """Back to health: restarted by the supervisor, ready, and routed again by the edge."""
    def restarted() -> bool:
        now = platform.state()["processes"][instance]
        return (now["restarts"] > before["restarts"] and now["state"] == "ready"
                and now["pid"] not in (None, before["pid"]))

    wait_until(restarted, 60, f"{instance} to be restarted and ready")
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        wait_until(lambda: c.get(api, headers=admin).status_code == 200, 30,
                   f"the edge to route {api} to the restarted {instance}")


def orders_with_a_kill(platform: Platform, instance: str, api: str) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = new_product(c, admin, on_hand=ON_HAND)
    buyers = customers(platform, 5)
    accepted: list[str] = []
    enough = threading.Event()
    lock = threading.Lock()

    def place(i: int) -> str:
        auth, address_id = buyers[i % len(buyers)]
        order_id = place_until_accepted(platform, auth, order_body(product, address_id))
        with lock:
            accepted.append(order_id)
            if len(accepted) >= KILL_AFTER_ACCEPTED:
                enough.set()
        return order_id

    with ThreadPoolExecutor(10) as pool:
        placing = pool.map(place, range(ORDERS_IN_FLIGHT))
        assert enough.wait(120), f"only {len(accepted)} orders accepted before the kill"
        before = kill_9(platform, instance)
        ids = list(placing)
    assert len(set(ids)) == ORDERS_IN_FLIGHT
    # The bound runs from the moment the killed service is back and routed again.
    wait_restarted(platform, instance, before, api)

    with platform.client() as c:
        orders = all_terminal(c, admin, ids, timeout=TERMINAL_WITHIN_S)
        # One order per Idempotency-Key, even for a POST retried across the crash.
        mine = [o for auth, _ in buyers for o in read(c, "/api/orders", auth, limit=100)]
        assert sorted(o["id"] for o in mine) == sorted(ids)
        approved = [o for o in orders.values() if o["status"] == "APPROVED"]
        for order in orders.values():
            assert order["status"] in ("APPROVED", "REJECTED"), order
            # Money follows the outcome: the total captured for an approved order, nothing
            # kept for a rejected one (a refund may still be on its way when it turns so).
            expected = (Decimal(order["total"]["amount"]) if order["status"] == "APPROVED"
                        else Decimal(0))
            wait_until(lambda o=order, e=expected: net_captured(c, admin, o["id"]) == e, 30,
                       f"net captured {expected} for {order}")
        stock = wait_until(lambda: (s := stock_of(c, product["sku"]))["reserved"] == 0 and s,
                           30, "every reservation committed or released")
        assert stock["on_hand"] == ON_HAND - len(approved), (stock, len(approved))

    checked = mercato(platform.home, "check", check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.timeout(300)
def test_payments_killed_with_orders_in_flight(platform: Platform) -> None:
    orders_with_a_kill(platform, "payments-1", "/api/payments/payments?order_id=x")


@pytest.mark.timeout(300)
def test_orders_killed_mid_saga(platform: Platform) -> None:
    orders_with_a_kill(platform, "orders-1", "/api/orders")
