"""Setting a shop up through the edge, as a shop would be used, for the load commands
(``mercato bench orders``, ``mercato chaos``, ``mercato soak``): where the platform listens
(its ``run/state.json``), a throw-away admin who stocks a few products, and customers who
register, log in, add an address and exchange two test cards for payment methods (as a
storefront does once per card)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

APPROVE_CARD = "4242424242424242"
DECLINE_CARD = "4000000000000002"
CUSTOMER_PASSWORD = "bench password 1"  # noqa: S105 - throw-away accounts of the bench


class BenchError(Exception):
    """Something the user can fix; the message says what to do next."""



@dataclass(frozen=True)
class Platform:
    edge_url: str
    nats_url: str
    postgres_port: int
    groups: dict[str, list[int]]  # process group (service, engine, ...) -> pids


def read_platform(home: Path) -> Platform:
    """Where the edge and NATS listen and which pids belong to what, from ``run/state.json``."""
    path = home / "run" / "state.json"
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise BenchError(f"{path} not found: start the platform first "
                         f"(mercato up --detach)") from exc
    except ValueError as exc:
        raise BenchError(f"{path} is not valid JSON ({exc}): restart the platform "
                         "(mercato down, then mercato up --detach)") from exc
    if state.get("phase") != "ready":
        raise BenchError(f"the platform is {state.get('phase')!r}, not ready: see mercato "
                         "status")
    ports = state.get("ports") or {}
    if not isinstance(ports.get("edge"), int):
        raise BenchError("the platform runs without the edge (Envoy): start it with "
                         "mercato up --detach")
    groups: dict[str, list[int]] = {}
    for name, proc in (state.get("processes") or {}).items():
        if proc.get("pid"):
            groups.setdefault(proc.get("service") or name, []).append(int(proc["pid"]))
    if state.get("supervisor_pid"):
        groups["supervisor"] = [int(state["supervisor_pid"])]
    missing = {"orders", "inventory", "payments", "identity", "catalog"} - set(groups)
    if missing:
        raise BenchError(f"not running: {', '.join(sorted(missing))}; start every service "
                         "(mercato up --detach without --service)")
    return Platform(edge_url=f"http://127.0.0.1:{ports['edge']}",
                    nats_url=f"nats://127.0.0.1:{ports['nats']}",
                    postgres_port=int(ports["postgres"]), groups=groups)



@dataclass
class Customer:
    auth: dict[str, str]
    address_id: str
    # The customer's own connections, from its own address (see customer_session).
    session: Any = None
    # Payment methods of the approving and the declining test card.
    approve_method: str = ""
    decline_method: str = ""
    # To sign in again before the access token expires (long chaos and soak runs).
    email: str = ""
    token_at: float = 0.0


@dataclass
class Shop:
    admin: dict[str, str]
    customers: list[Customer]
    products: list[dict[str, Any]]
    events: dict[str, tuple[str, float | None, float]] = field(default_factory=dict)
    admin_login: tuple[str, str] = ("", "")
    admin_at: float = 0.0

    async def close(self) -> None:
        for customer in self.customers:
            if customer.session is not None:
                await customer.session.close()


def customer_session(i: int, like: Any) -> Any:
    """Customer ``i``'s client, connecting from its own loopback address (127.2.x.y; Linux
    routes all of 127.0.0.0/8 on lo). The edge limits order placing per client address, as
    real customers each have theirs; one address for the whole bench would be one customer
    placing every order."""
    import aiohttp

    address = f"127.2.{i // 250 % 250}.{i % 250 + 2}"
    return aiohttp.ClientSession(
        timeout=like.timeout, headers={"User-Agent": "mercato-bench"},
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, local_addr=(address, 0)))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def fetch_json(session: Any, method: str, url: str, *, expect: tuple[int, ...] = (200,),
                patient: bool = False, **kwargs: Any) -> Any:
    """One JSON call; ``patient`` waits out (for up to 30 s) what passes by itself: a rate
    limit (429) and a service briefly out of the edge's rotation (503), so that one blip in a
    30-minute soak's token refresh does not end the run."""
    for attempt in range(30):
        async with session.request(method, url, **kwargs) as resp:
            body = await resp.read()
            if resp.status in (429, 503) and patient and attempt < 29:
                await asyncio.sleep(1.0)
                continue
            if resp.status not in expect:
                raise BenchError(f"{method} {url} answered {resp.status}: "
                                 f"{body[:300].decode(errors='replace')}")
            return json.loads(body) if body else None
    raise AssertionError("unreachable")


@contextlib.asynccontextmanager
async def edge_session(edge_url: str, user_agent: str,
                       timeout_s: float = 60) -> AsyncIterator[Any]:
    """The load tools' HTTP session against the edge (unbounded connections, as an open load
    model needs), once the edge is seen to answer; a clear error when it does not."""
    import aiohttp

    async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None),
            headers={"User-Agent": user_agent}) as session:
        try:
            await fetch_json(session, "GET", f"{edge_url}/api/catalog/products",
                             params={"page_size": "1"})
        except (aiohttp.ClientError, OSError) as exc:
            raise BenchError(f"the edge {edge_url} does not answer ({exc}): see "
                             "mercato status") from exc
        yield session


def create_admin(home: Path, email: str, password: str) -> None:
    """An admin account, made the way ``mercato admin create-admin`` makes one."""
    from mercato.runtime.paths import Home
    from mercato.runtime.postgres import Postgres
    from mercato.runtime.services import repo_root

    h = Home(home)
    ports = h.ports()
    url = Postgres(h, ports.postgres).service_database_url("identity")
    if url is None:
        raise BenchError("the identity database does not exist: run mercato up once")
    env = {**os.environ, "IDENTITY_DATABASE_URL": url,
           "IDENTITY_NATS_URL": f"nats://127.0.0.1:{ports.nats}",
           "IDENTITY_ENVIRONMENT": "development", "IDENTITY_INSTANCE_ID": "identity-bench"}
    res = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "identity", "create-admin", email, "--password-stdin"],
        input=password + "\n", text=True, env=env, cwd=str(repo_root()), capture_output=True,
        timeout=120, check=False)
    if res.returncode != 0:
        raise BenchError(f"creating the bench's admin failed: {res.stderr.strip()[-500:]}")


async def login(session: Any, edge: str, email: str, password: str) -> str:
    # The token route is rate-limited at the edge (per client, under a total): wait on a 429.
    doc = await fetch_json(session, "POST", f"{edge}/api/identity/token", patient=True,
                      data={"grant_type": "password", "username": email,
                            "password": password})
    return str(doc["access_token"])


def beside_the_monolith(home: Path) -> bool:
    """Whether the platform runs the monolith's data sync (``mercato up --with legacy``)."""
    try:
        state = json.loads((home / "run" / "state.json").read_text())
    except (OSError, ValueError):
        return False
    return "sync" in (state.get("urls") or {})


async def own_products(session: Any, edge: str, admin: dict[str, str], tag: str,
                       n: int) -> list[dict[str, Any]]:
    """Products of the bench's own, born in the catalog, as the legacy side's bench makes its
    own in the monolith. Beside the monolith the catalog holds the monolith's products (no
    demo catalog) and their stock is split between the two sides (ADR 0034): setting it
    with the inventory's admin PUT would break the split's ledger, while a product born in
    the catalog is outside the split, its units the inventory's alone."""
    slug = f"bench-{tag}"
    await fetch_json(session, "POST", f"{edge}/api/catalog/categories", expect=(201,),
                     headers=admin, json={"slug": slug, "name": f"Bench {tag}"})
    return [await fetch_json(session, "POST", f"{edge}/api/catalog/products", expect=(201,),
                             headers=admin, json={
                                 "sku": f"BENCH-{tag}-{i}", "name": f"Bench product {i}",
                                 "category": slug,
                                 "price": {"amount": f"{10000 + 500 * i}", "currency": "KRW"}})
            for i in range(n)]


async def prepare_shop(session: Any, home: Path, edge: str, *, customers: int, products: int,
                       orders: int, say: Callable[[str], None]) -> Shop:
    tag = uuid.uuid4().hex[:10]
    say("creating an admin, stocking products …")
    admin_email, admin_password = f"bench-admin-{tag}@example.com", uuid.uuid4().hex
    await asyncio.to_thread(create_admin, home, admin_email, admin_password)
    admin = bearer(await login(session, edge, admin_email, admin_password))
    if beside_the_monolith(home):
        chosen = await own_products(session, edge, admin, tag, products)
    else:
        page = await fetch_json(session, "GET", f"{edge}/api/catalog/products",
                                params={"page_size": str(max(products, 1))})
        chosen = [p for p in page["items"] if p.get("status", "active") == "active"][:products]
    if not chosen:
        raise BenchError("the catalog has no active product: is the catalog seeded?")
    per_product = orders // len(chosen) + 10
    for product in chosen:
        url = f"{edge}/api/inventory/stock/{product['sku']}"
        deadline = time.monotonic() + 30
        while True:  # the stock row follows ProductCreated through the broker
            async with session.get(url) as resp:
                if resp.status == 200:
                    stock = await resp.json()
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"no stock row for {product['sku']} after 30 s: see "
                                 "mercato logs inventory")
            await asyncio.sleep(0.5)
        await fetch_json(session, "PUT", url, headers=admin,
                    json={"on_hand": int(stock["on_hand"]) + per_product})
    say(f"registering {customers} customers (login, address, payment methods) …")
    shop = Shop(admin=admin, customers=[], products=chosen,
                admin_login=(admin_email, admin_password), admin_at=time.monotonic())

    async def one(i: int) -> Customer:
        email = f"bench-{tag}-{i}@example.com"
        own = customer_session(i, session)
        try:
            await fetch_json(own, "POST", f"{edge}/api/identity/register", expect=(201,),
                        patient=True, json={"email": email, "password": CUSTOMER_PASSWORD,
                                              "name": f"Bench Customer {i}"})
            auth = bearer(await login(own, edge, email, CUSTOMER_PASSWORD))
            address = await fetch_json(own, "POST", f"{edge}/api/identity/me/addresses",
                                  expect=(201,), headers=auth,
                                  json={"name": "Ada", "line1": "1 Main St", "city": "Seoul",
                                        "postal_code": "04524", "country": "KR"})
            methods = [await fetch_json(own, "POST", f"{edge}/api/payments/payment-methods",
                                   expect=(201,), headers=auth, json={"card_number": card})
                       for card in (APPROVE_CARD, DECLINE_CARD)]
        except BaseException:
            await own.close()
            raise
        return Customer(auth=auth, address_id=str(address["id"]), session=own,
                        approve_method=str(methods[0]["id"]),
                        decline_method=str(methods[1]["id"]), email=email,
                        token_at=time.monotonic())

    # A few at a time: registration hashes the password (argon2id) on identity's one core.
    for start in range(0, customers, 4):
        shop.customers += await asyncio.gather(*(one(i) for i in
                                                 range(start, min(customers, start + 4))))
    return shop


async def refresh_tokens(session: Any, edge: str, shop: Shop, *, older_than_s: float) -> int:
    """Sign in again every account whose access token is older than ``older_than_s``
    (tokens last 15 minutes by default), updating the headers in place so senders in flight
    use the new one. Returns how many were renewed."""
    renewed = 0
    now = time.monotonic()
    if shop.admin_login[0] and now - shop.admin_at > older_than_s:
        shop.admin.update(bearer(await login(session, edge, *shop.admin_login)))
        shop.admin_at, renewed = time.monotonic(), renewed + 1
    for customer in shop.customers:
        if customer.email and now - customer.token_at > older_than_s:
            customer.auth.update(bearer(await login(customer.session or session, edge,
                                                    customer.email, CUSTOMER_PASSWORD)))
            customer.token_at, renewed = time.monotonic(), renewed + 1
    return renewed
