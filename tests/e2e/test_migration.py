"""The strangler-fig migration through the edge (issue 15 items 2, 3 and 5; ADR 0028).

One platform with the monolith (`--with legacy`), catalog, inventory and identity, seeded by
`mercato legacy seed`. First the monolith alone: an order through its /shop API in one
transaction, recorded in its outbox (ADR 0026). Then the scenario, in order, bounded (a few
hundred requests, a handful of orders):

1. all legacy: every legacy path answered by the monolith, whatever the bucket;
2. shadow catalog reads: comparisons counted per route, mismatches kept with both bodies;
   until the sync's backfill (item 4) has copied the monolith's products into the catalog
   the two sides hold different products, so the guard refuses the shift on the mismatch
   rate;
2b. `mercato migrate backfill catalog`: then the shadow agrees, 0 mismatches after
   normalisation, over product pages, single products and categories;
3. guarded shifts at 10 %, 50 %, 100 % and a rollback, with reads and legacy orders running
   throughout: every request answered, customers sticky by bucket, every order placed and
   in the history;
4. the guard refuses a shift while the services side fails (catalog stopped);
5. finish: every client, bucket or not, served by the services.

`mercato check` and `mercato legacy check` pass between the steps. Not covered until the
other capabilities' translations and their sync exist: identity/cart/checkout shifts,
orders on both sides.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx2 as httpx
import pytest
from edge_helpers import Platform, mercato, running_platform, scratch_home, wait_until
from mercato.migration.buckets import HEADER, bucket_of
from mercato.migration.routes import SERVED_BY
from mercato.runtime import commands
from mercato.runtime.paths import Home
from mercato.runtime.postgres import Postgres

pytestmark = pytest.mark.e2e

PASSWORD = "e2e-password-1"


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    home = scratch_home("mercato-migration-e2e-")
    with running_platform(home, "--service", "catalog", "--service", "inventory",
                          "--service", "identity", "--with", "legacy",
                          "--no-telemetry") as p:
        seeded = mercato(home, "legacy", "seed", "--customers", "30", "--products", "25",
                         "--orders", "60", timeout=120, check=False)
        assert seeded.returncode == 0, seeded.stderr
        assert "seeded" in seeded.stderr
        with p.client() as c:
            wait_until(lambda: c.get("/shop/categories").status_code == 200, 60,
                       "the monolith through the edge")
        yield p


def migrate(p: Platform, *args: str, check: bool = True) -> Any:
    return mercato(p.home, "migrate", *args, timeout=60, check=check)


def status(p: Platform) -> dict[str, Any]:
    doc = json.loads(migrate(p, "status", "--json").stdout)
    return {row["capability"]: row for row in doc["capabilities"]}


def shop_customer(c: httpx.Client, name: str) -> tuple[dict[str, str], dict[str, Any]]:
    """A new customer of the monolith's /shop API, signed in, with one address."""
    email = f"e2e-{uuid.uuid4().hex[:8]}@example.com"
    registered = c.post("/shop/register", json={"email": email, "password": PASSWORD,
                                                "name": name})
    assert registered.status_code == 201, registered.text
    token = c.post("/shop/login", json={"email": email, "password": PASSWORD}).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    address = c.post("/shop/addresses", headers=auth, json={
        "recipient": name, "line1": "1 Test-ro", "city": "Seoul",
        "postal_code": "04100"}).json()
    return auth, address


def both_sides_consistent(p: Platform) -> None:
    """`mercato check` (the services) and `mercato legacy check` (the monolith and its
    charges at the provider) pass; run between steps, when no checkout is in flight."""
    for command in (("check",), ("legacy", "check")):
        res = mercato(p.home, *command, "--grace", "1", "--json", timeout=60, check=False)
        assert res.returncode == 0, (command, res.stdout[-3000:], res.stderr[-2000:])
        assert json.loads(res.stdout)["violations"] == []


def served_by(c: httpx.Client, path: str, bucket: int | None) -> str:
    r = c.get(path, headers={} if bucket is None else {HEADER: str(bucket)})
    assert r.status_code == 200, (path, r.status_code, r.text)
    return str(r.headers[SERVED_BY])


def test_0_an_order_through_the_monolith(platform: Platform) -> None:
    status_doc = json.loads(mercato(platform.home, "status", "--json").stdout)
    row = next(p for p in status_doc["processes"] if p["process"] == "legacy")
    assert (row["state"], row["health"]) == ("ready", "ok")
    shop_url = status_doc["urls"]["legacy"]
    with httpx.Client(base_url=shop_url.removesuffix("/shop"), timeout=30) as c:
        products = c.get("/shop/products", params={"page_size": 100}).json()
        assert products["total"] > 0
        product = next(p for p in products["items"] if p["in_stock"] > 0)
        auth, address = shop_customer(c, "E2E")
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
        home = Home(platform.home)
        url = Postgres(home, home.ports().postgres).service_database_url("legacy")
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


def test_1_all_legacy(platform: Platform) -> None:
    both_sides_consistent(platform)  # the seeded year of trading, before any step
    with platform.client() as c:
        for bucket in (None, 0, 42, 99):
            assert served_by(c, "/shop/products?page_size=5", bucket) == "legacy"
            assert served_by(c, "/shop/categories", bucket) == "legacy"
        # A client cannot choose its side: the ACL's headers are the edge's to set.
        r = c.get("/shop/products", headers={"mercato-primary": "services"})
        assert r.headers[SERVED_BY] == "legacy"


def test_2_shadow_counts_and_keeps_mismatches_and_the_guard_refuses(
        platform: Platform) -> None:
    migrate(platform, "shadow", "catalog", "--percent", "100")
    with platform.client() as c:
        ids = [p["id"] for p in c.get("/shop/products", params={"page_size": 10}).json()
               ["items"]]
        # More than the guard needs: a comparison is skipped (and counted) when 8 are
        # already under way.
        for i in range(60):
            assert served_by(c, f"/shop/products/{ids[i % len(ids)]}", None) == "legacy"
    wait_until(lambda: (status(platform)["catalog"]["since_last_step"] or {})
               .get("comparisons", 0) >= 25, 30, "25 shadow comparisons")
    window = status(platform)["catalog"]["since_last_step"]
    assert window["mismatches"] > 0  # the catalog has not been backfilled (item 4)
    kept = json.loads(migrate(platform, "mismatches", "catalog", "--limit", "1").stdout)
    assert kept[0]["legacy"]["status"] == 200 and kept[0]["services"]["status"] == 404
    refused = migrate(platform, "shift", "catalog", "--percent", "10", check=False)
    assert refused.returncode == 1
    assert "shadow mismatch rate" in refused.stderr
    assert status(platform)["catalog"]["percent"] == 0


def test_2b_after_the_backfill_the_shadow_agrees(platform: Platform) -> None:
    done = mercato(platform.home, "migrate", "backfill", "catalog", timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    migrate(platform, "shadow", "catalog", "--percent", "100")  # a step: a new window
    with platform.client() as c:
        ids = [p["id"] for p in c.get("/shop/products", params={"page_size": 10}).json()
               ["items"]]
        for i in range(40):
            assert served_by(c, f"/shop/products/{ids[i % len(ids)]}", None) == "legacy"
            if i % 5 == 0:
                served_by(c, f"/shop/products?page_size=5&page={i // 5 + 1}", None)
                served_by(c, "/shop/categories", None)
    wait_until(lambda: (status(platform)["catalog"]["since_last_step"] or {})
               .get("comparisons", 0) >= 30, 30, "30 shadow comparisons")
    window = status(platform)["catalog"]["since_last_step"]
    kept = migrate(platform, "mismatches", "catalog", "--limit", "3").stdout
    assert window["mismatches"] == 0, kept


class Traffic:
    """Reads with random buckets and legacy orders, in the background, until stopped."""

    def __init__(self, p: Platform) -> None:
        self.p = p
        self.stop = threading.Event()
        self.statuses: Counter[int] = Counter()
        self.orders: list[tuple[dict[str, str], int]] = []
        self.order_errors: list[str] = []
        self.threads = [threading.Thread(target=self._reads, daemon=True),
                        threading.Thread(target=self._orders, daemon=True)]

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _reads(self) -> None:
        with self.p.client() as c:
            n = 0
            while not self.stop.is_set() and n < 2000:
                n += 1
                try:
                    r = c.get("/shop/products", params={"page_size": 5},
                              headers={HEADER: str(n % 100)})
                    self.statuses[r.status_code] += 1
                except httpx.HTTPError:
                    self.statuses[0] += 1

    def _orders(self) -> None:
        with self.p.client() as c:
            auth, address = shop_customer(c, "Migrating")
            # The best-stocked products (from the monolith itself: the catalog's side, which
            # may serve this list mid-shift, has no legacy ids until the backfill).
            shop = self.p.state()["urls"]["legacy"]
            products = sorted(httpx.get(f"{shop}/products", params={"page_size": 50},
                                        timeout=10).json()["items"],
                              key=lambda p: -p["in_stock"])[:4]
            for i in range(8):
                if self.stop.wait(0.3):
                    break
                r = c.post("/shop/checkout", headers={**auth, "Idempotency-Key": f"m-{i}"},
                           json={"address_id": address["id"],
                                 "card_number": "4242424242424242",
                                 "items": [{"product_id": products[i % len(products)]["id"],
                                            "quantity": 1}]})
                if r.status_code != 201:
                    self.order_errors.append(f"{r.status_code} {r.text}")
                else:
                    self.orders.append((auth, r.json()["id"]))


def test_3_shifts_are_sticky_and_drop_no_request(platform: Platform) -> None:
    customer = "ana@example.com"
    mine = bucket_of(customer)
    with Traffic(platform) as traffic, platform.client() as c:
        for percent in (10, 50, 100):
            # Guarded for real: the shadow has compared the reads since the last step.
            migrate(platform, "shift", "catalog", "--percent", str(percent))
            side = {b: {served_by(c, "/shop/categories", b) for _ in range(5)}
                    for b in (0, percent - 1, percent, 99, mine)}
            # Sticky: the same bucket, the same side, every time.
            assert all(len(s) == 1 for s in side.values()), side
            assert side[0] == {"services"} and side[percent - 1] == {"services"}
            if percent < 100:
                assert side[percent] == {"legacy"}
                assert served_by(c, "/shop/categories", None) == "legacy"
            else:
                assert served_by(c, "/shop/categories", None) == "services"
            assert side[mine] == {"services" if mine < percent else "legacy"}
        migrate(platform, "rollback", "catalog")
        assert {served_by(c, "/shop/categories", b) for b in (0, 50, 99)} == {"legacy"}
    assert set(traffic.statuses) == {200}, traffic.statuses
    assert traffic.order_errors == []
    assert traffic.orders
    with platform.client() as c:
        for auth, order_id in traffic.orders:
            order = c.get(f"/shop/orders/{order_id}", headers=auth).json()
            assert order["status"] == "PAID"
        history = c.get("/shop/orders", headers=traffic.orders[0][0]).json()["items"]
        assert {o["id"] for o in history} == {o for _, o in traffic.orders}
    both_sides_consistent(platform)


def test_4_the_guard_refuses_while_the_services_side_fails(platform: Platform) -> None:
    sock = platform.home / "sockets" / "supervisor.sock"
    catalog = [name for name, p in platform.state()["processes"].items()
               if p.get("service") == "catalog"]
    for name in catalog:
        assert asyncio.run(commands.send(sock, "stop", name))["ok"]
    try:
        migrate(platform, "shadow", "catalog", "--percent", "100")
        with platform.client() as c:
            for _ in range(60):
                assert served_by(c, "/shop/categories", 0) == "legacy"
        wait_until(lambda: (status(platform)["catalog"]["since_last_step"] or {})
                   .get("services", {}).get("errors", 0) >= 20, 30,
                   "the services side's failures counted")
        refused = migrate(platform, "shift", "catalog", "--percent", "10",
                          "--max-mismatch-rate", "1", check=False)
        assert refused.returncode == 1
        assert "services side error rate" in refused.stderr
        assert status(platform)["catalog"]["percent"] == 0
    finally:
        for name in catalog:
            asyncio.run(commands.send(sock, "start", name))
    with platform.client() as c:
        wait_until(lambda: c.get("/api/catalog/categories").status_code == 200, 60,
                   "the catalog back")


def test_5_finish_moves_every_client(platform: Platform) -> None:
    migrate(platform, "shadow", "catalog", "--percent", "0")
    migrate(platform, "shift", "catalog", "--percent", "100")
    migrate(platform, "finish", "catalog")
    row = status(platform)["catalog"]
    assert (row["finished"], row["shadow"], row["routes_to"]) == (True, 0, "services")
    with platform.client() as c:
        assert served_by(c, "/shop/categories", None) == "services"
        # The back office is no capability's: it stays on the monolith.
        assert c.get("/shop/admin/products").headers[SERVED_BY] == "legacy"
    both_sides_consistent(platform)
