"""A broker (NATS) outage through the edge. The platform's nats-server is stalled with
SIGSTOP — connections stay open and nothing answers, the hardest kind of outage to notice;
the supervisor sees a live process and leaves it alone — for longer than a registry entry
lives. Meanwhile catalog reads, the JWKS, sign-in, token checks and order placement answer
2xx; every service stays ready, reports the broker as degraded and shows
dependency_up{dependency="nats"} 0. When NATS is back the edge keeps routing while the
services re-register, and the orders placed during the outage complete: the outbox rows
written meanwhile are relayed."""

from __future__ import annotations

import contextlib
import json
import signal
import time
import uuid

import httpx2 as httpx
import psutil
import pytest
from edge_helpers import Platform, keep_until, mercato
from shop import all_terminal, bearer, customer_with_address, new_product, order_body

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

# Longer than a registry entry lives (TTL 15 s) and than a heartbeat counts (10 s): when the
# broker is back, it lists no instance until they have beaten again.
OUTAGE_AT_LEAST_S = 18


def nats_process(platform: Platform) -> psutil.Process:
    entry = platform.state()["processes"]["nats"]
    assert entry["state"] == "ready" and entry["pid"], entry
    proc = psutil.Process(entry["pid"])
    assert "nats-server" in proc.cmdline()[0], proc.cmdline()
    assert proc.environ().get("MERCATO_RUNTIME_HOME") == str(platform.home)
    return proc


def service_ports(platform: Platform) -> dict[str, int]:
    return {name: p["port"] for name, p in platform.state()["processes"].items()
            if p["kind"] == "service"}


def broker_state(port: int) -> tuple[int, str, float | None]:
    """(readiness status, the broker's check, the dependency_up gauge) of one instance."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
        ready = c.get("/health/ready")
        gauge = None
        for line in c.get("/metrics").text.splitlines():
            if line.startswith('dependency_up{dependency="nats",'):
                gauge = float(line.split()[-1])
    return ready.status_code, ready.json()["checks"]["nats"], gauge


def fully_up(port: int) -> bool:
    with httpx.Client(timeout=5) as c:
        return c.get(f"http://127.0.0.1:{port}/health/ready?strict=true").status_code == 200


def shop_round(platform: Platform, user: dict, auth: dict, body: dict) -> str:
    """What a shopper does (from a device of their own: the edge limits rates per client);
    every answer must be 2xx. Returns the order placed."""
    with platform.client() as c:
        return _shop(c, user, auth, body)


def _shop(c: httpx.Client, user: dict, auth: dict, body: dict) -> str:
    def expect(resp: httpx.Response, status: int, what: str) -> httpx.Response:
        assert resp.status_code == status, f"{what}: {resp.status_code} {resp.text[:300]}"
        return resp

    expect(c.get("/api/catalog/products", params={"page_size": 5}), 200, "catalog read")
    expect(c.get("/.well-known/jwks.json"), 200, "JWKS")
    signed_in = expect(c.post("/api/identity/token", data={
        "grant_type": "password", "username": user["email"], "password": user["password"]}),
        200, "sign-in")
    expect(c.get("/api/identity/me", headers=bearer(signed_in.json()["access_token"])), 200,
           "token check")
    placed = expect(c.post("/api/orders", json=body,
                           headers={**auth, "Idempotency-Key": str(uuid.uuid4())}),
                    202, "order placement")
    order_id: str = placed.json()["id"]
    return order_id


@pytest.mark.timeout(300)
def test_the_shop_stays_open_through_a_broker_outage(platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        # Enough for every round: a fast machine places one every ~0.15 s for a minute or
        # more, and an order refused for want of stock would hide what this test looks for.
        product = new_product(c, admin, on_hand=10_000)
        user = platform.register(c)
        auth, address_id = customer_with_address(platform, c)
        body = order_body(product, address_id)
        # A shop that has been running: its services have called each other before.
        warm_up = _shop(c, user, auth, body)
        all_terminal(c, admin, [warm_up], timeout=60)
    ports = service_ports(platform)
    nats = nats_process(platform)

    placed: list[str] = []
    nats.send_signal(signal.SIGSTOP)
    stalled_at = time.monotonic()
    try:
        def every_service_degraded() -> bool:
            states = {name: broker_state(port) for name, port in ports.items()}
            for name, (status, check, gauge) in states.items():
                assert status == 200, f"{name} left the rotation: {status} {check}"
                if not (check.startswith("degraded") and gauge == 0):
                    return False
            return True

        keep_until(every_service_degraded, 30, "every service to report the broker degraded")
        status = json.loads(mercato(platform.home, "status", "--json").stdout)
        health = {p["process"]: p["health"] for p in status["processes"]
                  if p["kind"] == "service"}
        assert set(health.values()) == {"degraded (nats)"}, health
        with platform.client() as c:
            while not placed or time.monotonic() - stalled_at < OUTAGE_AT_LEAST_S:
                placed.append(shop_round(platform, user, auth, body))
                # Accepted and stored; the saga waits for the broker.
                order = c.get(f"/api/orders/{placed[-1]}", headers=auth)
                assert order.status_code == 200 and order.json()["status"] == "PENDING"
    finally:
        # The supervisor may have killed the stalled broker already (its liveness timeout,
        # 15 s, is shorter than this outage) and started a new one: both end the outage.
        with contextlib.suppress(psutil.NoSuchProcess):
            nats.send_signal(signal.SIGCONT)
    resumed_at = time.monotonic()

    with platform.client() as c:
        # Coming back: the services re-register while the edge keeps routing to them.
        rounds = 0

        def all_back() -> bool:
            nonlocal rounds
            rounds += 1
            placed.append(shop_round(platform, user, auth, body))
            return all(fully_up(port) for port in ports.values())

        keep_until(all_back, 60, "every service fully up again", interval=0.5)
        for status, check, gauge in (broker_state(port) for port in ports.values()):
            assert (status, check, gauge) == (200, "ok", 1)
        print(f"outage {resumed_at - stalled_at:.1f} s, {len(placed)} orders; back after "
              f"{time.monotonic() - resumed_at:.1f} s ({rounds} rounds)")
        orders = all_terminal(c, admin, placed, timeout=120)
        refused = {i: o.get("reason") for i, o in orders.items() if o["status"] != "APPROVED"}
        assert not refused, f"{len(refused)} of {len(orders)} orders not approved: {refused}"
