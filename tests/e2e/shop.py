"""Shopping through the edge for the e2e tests: products with stock, customers with an
address, orders placed and awaited; and the crowds the concurrency and chaos tests need."""

from __future__ import annotations

import itertools
import random
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx2 as httpx
from edge_helpers import Platform, wait_until

APPROVE_CARD = "4242424242424242"
TERMINAL = ("APPROVED", "REJECTED", "CANCELLED")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stocked_product(c: httpx.Client, admin: dict[str, str], on_hand: int) -> dict:
    product = c.get("/api/catalog/products", params={"q": "kettle"}).json()["items"][0]
    sku = product["sku"]
    wait_until(lambda: c.get(f"/api/inventory/stock/{sku}").status_code == 200, 30,
               "the stock row")
    assert c.put(f"/api/inventory/stock/{sku}", json={"on_hand": on_hand},
                 headers=admin).status_code == 200
    return product


def customer_with_address(platform: Platform, c: httpx.Client) -> tuple[dict, str]:
    user = platform.register(c)
    token = platform.login(c, user["email"], user["password"])["access_token"]
    address = c.post("/api/identity/me/addresses", headers=bearer(token), json={
        "name": "Ada", "line1": "1 Main St", "city": "Seoul", "postal_code": "04524",
        "country": "KR"})
    assert address.status_code == 201, address.text
    return bearer(token), address.json()["id"]


def place(c: httpx.Client, auth: dict, product: dict, address_id: str, card: str) -> str:
    resp = c.post("/api/orders", headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
                  json={"items": [{"product_id": product["id"], "quantity": 1}],
                        "shipping_address_id": address_id, "payment": {"card_number": card}})
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "PENDING"
    return resp.json()["id"]


def payment_method(c: httpx.Client, auth: dict, card: str) -> dict:
    """The card exchanged for a payment method of the customer's, as a storefront does
    before placing an order: {id, last4, brand, created_at}."""
    resp = c.post("/api/payments/payment-methods", headers=auth, json={"card_number": card})
    assert resp.status_code == 201, resp.text
    return resp.json()


def place_with(c: httpx.Client, auth: dict, product: dict, address_id: str,
               payment: dict[str, str]) -> str:
    """POST /api/orders with a payment of either form ({payment_method_id} or
    {card_number}); the order's id."""
    resp = c.post("/api/orders", headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
                  json={"items": [{"product_id": product["id"], "quantity": 1}],
                        "shipping_address_id": address_id, "payment": payment})
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def settled(c: httpx.Client, auth: dict, order_id: str) -> dict:
    return wait_until(lambda: (o := c.get(f"/api/orders/{order_id}", headers=auth).json())
                      ["status"] != "PENDING" and o, 60, "the order to settle")


def new_product(c: httpx.Client, admin: dict[str, str], on_hand: int,
                price: str = "39000") -> dict:
    """A product of its own (a fresh SKU), so that no other test touches its price or stock."""
    sku = f"CC-{uuid.uuid4().hex[:10].upper()}"
    created = c.post("/api/catalog/products", headers=admin, json={
        "sku": sku, "name": f"E2E kettle {sku}", "description": "e2e",
        "category": "kitchen", "price": {"amount": price, "currency": "KRW"}})
    assert created.status_code == 201, created.text
    wait_until(lambda: c.get(f"/api/inventory/stock/{sku}").status_code == 200, 30,
               "the stock row")
    assert c.put(f"/api/inventory/stock/{sku}", json={"on_hand": on_hand},
                 headers=admin).status_code == 200
    return created.json()


def stock_of(c: httpx.Client, sku: str) -> dict:
    return read(c, f"/api/inventory/stock/{sku}", {})


def _retry_throttled(send: Callable[[], httpx.Response], what: str,
                     timeout: float = 60) -> httpx.Response:
    """The edge rate-limits sign-ins and registrations (per client, under a total ceiling
    that a crowd of clients can reach): wait out a 429."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        resp = send()
        if resp.status_code != 429 or time.monotonic() > deadline:
            assert resp.status_code < 400, f"{what}: {resp.status_code} {resp.text}"
            return resp
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def customers(platform: Platform, count: int, workers: int = 8) -> list[tuple[dict, str]]:
    """``count`` new customers, each logged in with one address: (auth headers, address id).

    Registration and login hash with argon2id (CPU heavy), so a few workers do it, each
    customer from its own client address, retrying what the edge's total ceiling refuses."""
    password = "correct horse battery"

    def one(_: int) -> tuple[dict, str]:
        with platform.client() as c:
            email = f"crowd-{uuid.uuid4().hex[:12]}@example.com"
            _retry_throttled(lambda: c.post("/api/identity/register", json={
                "email": email, "password": password, "name": "Crowd"}), "register")
            token = _retry_throttled(lambda: c.post("/api/identity/token", data={
                "grant_type": "password", "username": email, "password": password}),
                "login").json()["access_token"]
            address = c.post("/api/identity/me/addresses", headers=bearer(token), json={
                "name": "Ada", "line1": "1 Main St", "city": "Seoul", "postal_code": "04524",
                "country": "KR"})
            assert address.status_code == 201, address.text
            return bearer(token), address.json()["id"]

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(count)))


def order_body(product: dict, address_id: str, card: str = APPROVE_CARD) -> dict[str, Any]:
    return {"items": [{"product_id": product["id"], "quantity": 1}],
            "shipping_address_id": address_id, "payment": {"card_number": card}}


def place_until_accepted(platform: Platform, auth: dict, body: dict[str, Any], *,
                         timeout: float = 90, first_answers: list[int] | None = None) -> str:
    """POST /api/orders as a careful client does: on a 5xx or a lost connection (an overload,
    the orders service restarting) it retries with the same Idempotency-Key after a jittered
    pause, so one order results. ``first_answers`` collects each call's first status code
    (0: no answer)."""
    key = str(uuid.uuid4())
    deadline = time.monotonic() + timeout
    last: Any = None
    answers = first_answers if first_answers is not None else []
    with platform.client() as c:
        for attempt in itertools.count():
            if time.monotonic() >= deadline:
                break
            try:
                resp = c.post("/api/orders", headers={**auth, "Idempotency-Key": key},
                              json=body, timeout=20)
            except httpx.TransportError as exc:
                resp, last = None, exc
            if attempt == 0:
                answers.append(0 if resp is None else resp.status_code)
            if resp is not None:
                if resp.status_code == 202:
                    return resp.json()["id"]
                assert resp.status_code >= 500 or resp.status_code == 429, \
                    f"{resp.status_code} {resp.text}"
                last = f"{resp.status_code} {resp.text[:200]}"
                if resp.status_code == 429:  # the edge's ceiling: wait as told, then retry
                    time.sleep(float(resp.headers.get("retry-after", "1")))
                    continue
            time.sleep(random.uniform(0.5, 2.0))
    raise AssertionError(f"POST /api/orders never accepted within {timeout}s (last: {last!r})")


def orders_by_id(c: httpx.Client, admin: dict[str, str], ids: Iterable[str]) -> dict[str, dict]:
    """Each order as its customer's GET /api/orders/{id} would show it (read as admin)."""
    found = {}
    for order_id in ids:
        found[order_id] = read(c, f"/api/orders/{order_id}", admin)
    return found


def read(c: httpx.Client, path: str, headers: dict[str, str], **params: Any) -> Any:
    """A GET that must succeed; it waits out the edge's 503 while the one instance of a busy
    service fails its health checks (Envoy takes it out until it answers in time again)."""
    resp = wait_until(lambda: (r := c.get(path, headers=headers, params=params)).status_code
                      != 503 and r, 30, f"GET {path} answered", interval=0.5)
    assert resp.status_code == 200, f"GET {path}: {resp.status_code} {resp.text}"
    return resp.json()


def all_terminal(c: httpx.Client, admin: dict[str, str], ids: Iterable[str],
                 timeout: float) -> dict[str, dict]:
    """Wait until every order is terminal; on a timeout, name the ones that are not."""
    pending = set(ids)
    done: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while pending:
        for order_id, order in orders_by_id(c, admin, sorted(pending)).items():
            if order["status"] in TERMINAL:
                done[order_id] = order
                pending.discard(order_id)
        if not pending:
            break
        if time.monotonic() > deadline:
            sagas = {o: read(c, f"/api/orders/{o}/saga", admin)
                     for o in sorted(pending)[:3]}
            raise AssertionError(f"{len(pending)} orders not terminal after {timeout}s: "
                                 f"{sorted(pending)[:10]}; sagas: {sagas}")
        time.sleep(0.5)
    return done


def net_captured(c: httpx.Client, admin: dict[str, str], order_id: str) -> Decimal:
    return Decimal(read(c, "/api/payments/ledger", admin, order_id=order_id)["net_captured"])
