"""Security at the edge, end to end (docs/security.md): per-client rate limits, sign-in
throttling without lockout, response headers, and an access log without query strings.

Clients connect from their own loopback addresses (Linux routes 127.0.0.0/8 on lo), so the
edge sees them as different clients, as it would see customers on their own devices.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2 as httpx
import pytest
from edge_helpers import Platform, new_client_address, wait_until
from shop import customer_with_address

pytestmark = pytest.mark.e2e

SERVICES = ("identity", "catalog", "inventory", "cart", "orders", "payments", "shipping",
            "notifications", "order_history")


def flood_while(platform: Platform, address: str, send: Any, check: Any) -> tuple[Any, Counter]:
    """Runs ``send(client)`` in a loop from ``address`` (4 threads) until the flood is being
    answered 429, then runs ``check()`` while it goes on; returns check's result and the
    flood's statuses."""
    statuses: Counter[int] = Counter()
    stop = threading.Event()

    def flood() -> None:
        with platform.client(address) as c:
            while not stop.is_set():
                statuses[send(c).status_code] += 1

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(flood)
        try:
            wait_until(lambda: statuses[429] >= 10, 30, "the flooding client to be limited",
                       interval=0.05)
            result = check()
            limited_meanwhile = statuses[429]
        finally:
            stop.set()
    assert limited_meanwhile >= 10, statuses
    return result, statuses


def test_a_client_flooding_sign_ins_does_not_block_another_clients_sign_in(
        platform: Platform) -> None:
    with platform.client() as c:
        user = platform.register(c)

    def guess(c: httpx.Client) -> httpx.Response:
        return c.post("/api/identity/token", data={
            "grant_type": "password", "username": f"x-{uuid.uuid4().hex[:6]}@example.com",
            "password": "guess guess"})

    def sign_in() -> list[int]:
        with platform.client() as c:
            return [c.post("/api/identity/token", data={
                "grant_type": "password", "username": user["email"],
                "password": user["password"]}).status_code for _ in range(3)]

    answers, flood = flood_while(platform, new_client_address(), guess, sign_in)
    assert answers == [200, 200, 200], (answers, flood)


def test_429_from_the_edge_is_problem_json_with_retry_after(platform: Platform) -> None:
    with platform.client() as c:
        answers = [c.post("/api/identity/register", json={}) for _ in range(12)]
    limited = [r for r in answers if r.status_code == 429]
    assert limited, Counter(r.status_code for r in answers)
    assert limited[0].headers["retry-after"] == "1"
    assert limited[0].headers["content-type"] == "application/problem+json"
    assert limited[0].json()["status"] == 429


def test_registration_and_order_placing_are_limited_per_client(platform: Platform) -> None:
    with platform.client() as c:
        auth, _address = customer_with_address(platform, c)

    def bad_register(c: httpx.Client) -> httpx.Response:
        return c.post("/api/identity/register", json={"email": "no"})

    def register_elsewhere() -> int:
        with platform.client() as c:
            email = f"calm-{uuid.uuid4().hex[:10]}@example.com"
            return c.post("/api/identity/register", json={
                "email": email, "password": "correct horse battery", "name": "Calm"}).status_code

    status, _flood = flood_while(platform, new_client_address(), bad_register,
                                 register_elsewhere)
    assert status == 201

    def bad_order(c: httpx.Client) -> httpx.Response:
        return c.post("/api/orders", headers=auth, json={"items": []})

    def order_elsewhere() -> int:
        with platform.client() as c:
            return c.post("/api/orders", headers=auth, json={"items": []}).status_code

    status, _flood = flood_while(platform, new_client_address(), bad_order, order_elsewhere)
    # Not limited: the orders service itself answered (a refusal of the empty order).
    assert status != 429 and 400 <= status < 500, status


def test_an_attacker_guessing_a_password_does_not_lock_the_owner_out(
        platform: Platform) -> None:
    attacker, owner = new_client_address(), new_client_address()
    with platform.client(owner) as c:
        user = platform.register(c)

    def guesses(username: str, attacker: str) -> list[tuple[int, str | None, Any]]:
        with platform.client(attacker) as c:
            seen = []
            for _ in range(7):
                resp = c.post("/api/identity/token", data={
                    "grant_type": "password", "username": username, "password": "guess guess"})
                seen.append((resp.status_code, resp.headers.get("retry-after"), resp.json()))
            return seen

    known = guesses(user["email"], attacker)
    # Five checked guesses, then the attacker waits (identity's 429, with Retry-After) ...
    assert [s for s, _r, _b in known] == [400] * 5 + [429] * 2, known
    assert known[5][1] == "1"
    # ... exactly as for an account that does not exist: the answers do not tell. (From
    # another address: the edge's own per-client bucket on sign-ins holds 10.)
    assert guesses(f"nobody-{uuid.uuid4().hex[:8]}@example.com", new_client_address()) == known
    # The owner, from their own client, signs in at once.
    with platform.client(owner) as c:
        assert platform.login(c, user["email"], user["password"])["access_token"]


def test_nosniff_on_every_answer_and_no_instance_names_through_the_edge(
        platform: Platform) -> None:
    with platform.client() as c:
        auth, _address = customer_with_address(platform, c)
        answers = {
            "catalog": c.get("/api/catalog/products", params={"page_size": 1}),
            "identity": c.get("/api/identity/me", headers=auth),
            "inventory": c.get("/api/inventory/stock/NO-SUCH-SKU"),
            "cart": c.get("/api/cart", headers=auth),
            "orders": c.get("/api/orders", headers=auth),
            "payments": c.get("/api/payments/payments", headers=auth),
            "shipping": c.get("/api/shipping/track/NO-SUCH-PARCEL"),
            "notifications": c.get("/api/notifications/notifications", headers=auth),
            "order_history": c.get("/api/history/orders", headers=auth),
            "jwks": c.get("/.well-known/jwks.json"),
            "edge 401": c.get("/api/orders"),
            "edge 404": c.get("/no/route/here"),
        }
    for name, resp in answers.items():
        assert resp.headers.get_list("x-content-type-options") == ["nosniff"], name
        assert "x-mercato-instance" not in resp.headers, name
        assert resp.status_code < 500, (name, resp.status_code)


def test_every_service_says_nosniff_and_protects_its_docs_page(platform: Platform) -> None:
    """Straight at each service (the edge adds nosniff itself, so only this proves the
    services do), and the docs pages through the edge as a browser loads them."""
    procs = platform.state()["processes"]
    for service in SERVICES:
        # "<service>-<n>": not payments-provider, the simulated provider.
        name, proc = next((n, p) for n, p in procs.items()
                          if re.fullmatch(rf"{service}-\d+", n) and p.get("port"))
        prefix = "/api/history" if service == "order_history" else f"/api/{service}"
        docs = httpx.get(f"http://127.0.0.1:{proc['port']}{prefix}/docs", timeout=5)
        assert docs.status_code == 200, service
        assert docs.headers["x-content-type-options"] == "nosniff", service
        assert "frame-ancestors 'none'" in docs.headers["content-security-policy"], service
        assert docs.headers["x-frame-options"] == "DENY", service
        # Direct (operator) access still names the instance.
        assert docs.headers["x-mercato-instance"] == name
    with platform.client() as c:
        for prefix in ("/api/catalog", "/api/identity", "/api/inventory"):
            page = c.get(f"{prefix}/docs")
            assert page.status_code == 200, prefix
            csp = page.headers["content-security-policy"]
            assert "script-src 'self' 'sha256-" in csp and "unsafe-inline" not in \
                csp.split("script-src", 1)[1].split(";", 1)[0], prefix
            assert page.headers["x-frame-options"] == "DENY", prefix


def test_personal_data_is_never_cached(platform: Platform) -> None:
    with platform.client() as c:
        auth, address_id = customer_with_address(platform, c)
        personal = [
            c.get("/api/identity/me", headers=auth),
            c.get("/api/identity/me/addresses", headers=auth),
            c.get(f"/api/identity/me/addresses/{address_id}", headers=auth),
            c.get("/api/orders", headers=auth),
            c.get("/api/cart", headers=auth),
            c.get("/api/history/orders", headers=auth),
            c.get("/api/payments/payment-methods", headers=auth),
        ]
        public = c.get("/api/catalog/products", params={"page_size": 1})
    for resp in personal:
        assert resp.status_code == 200, (resp.request.url, resp.text)
        assert resp.headers.get_list("cache-control") == ["no-store"], resp.request.url
    assert "no-store" not in public.headers.get("cache-control", "")


def test_the_access_log_never_holds_a_query_string(platform: Platform) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    with platform.client() as c:
        resp = c.post(f"/api/identity/token?username=a@example.com&password={secret}",
                      data={"grant_type": "password"})
        request_id = resp.headers["x-request-id"]
    wait_until(lambda: any(e.get("request_id") == request_id for e in platform.access_log()),
               15, "the sign-in in the access log", interval=0.1)
    log_text = (platform.home / "logs" / "envoy-access.log").read_text()
    assert secret not in log_text
    (entry,) = [e for e in platform.access_log() if e.get("request_id") == request_id]
    assert entry["path"] == "/api/identity/token"
