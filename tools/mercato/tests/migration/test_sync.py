"""Data sync both ways between the monolith and the catalog (ADR 0029), on real pieces: the
monolith in its own process over an embedded PostgreSQL database, the catalog service (in a
thread, with its outbox relay to a JetStream server of this module's own), and the sync as
``python -m mercato.migration.sync``, which the tests stop, kill -9 and start again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import uvicorn
from catalog.app import MIGRATIONS_DIR as CATALOG_MIGRATIONS
from catalog.app import create_app as catalog_app
from catalog.settings import CatalogSettings
from chassis.migrations import upgrade_to_head as catalog_upgrade
from chassis.registry_keys import new_key_pair
from chassis.testing import TokenMinter
from legacy.migrate import upgrade_to_head as legacy_upgrade
from mercato.migration.ids import services_id
from mercato.runtime.nats import Nats
from mercato.runtime.paths import free_port

pytestmark = pytest.mark.integration

minter = TokenMinter()
ADMIN = minter.auth(["customer", "admin"])
SYNC_KEY, SYNC_PUBLIC = new_key_pair()
PASSWORD = "correct horse battery"


class HTTPError(Exception):
    pass


@dataclass
class Resp:
    status_code: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise HTTPError(f"{self.status_code}: {self.text}")


def call(method: str, url: str, json_body: Any = None,
         headers: dict[str, str] | None = None) -> Resp:
    data = None if json_body is None else json.dumps(json_body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={
        **({"Content-Type": "application/json"} if data else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return Resp(resp.status, resp.read().decode())
    except urllib.error.HTTPError as exc:
        return Resp(exc.code, exc.read().decode())


class httpx:  # the few calls these tests make, over urllib
    HTTPError = HTTPError

    @staticmethod
    def get(url: str, headers: dict[str, str] | None = None) -> Resp:
        return call("GET", url, headers=headers)

    @staticmethod
    def post(url: str, json: Any = None, headers: dict[str, str] | None = None) -> Resp:
        return call("POST", url, json, headers)

    @staticmethod
    def patch(url: str, json: Any = None, headers: dict[str, str] | None = None) -> Resp:
        return call("PATCH", url, json, headers)


def sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    # Generous: other work shares the 2 cores; a condition met returns at once.
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, OSError):
            last = check()
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def _wait_http(url: str, proc: subprocess.Popen[bytes] | None, what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, f"{what} did not start"
            assert proc is None or proc.poll() is None, f"{what} exited"
            time.sleep(0.1)


@dataclass
class World:
    legacy_db: str
    catalog_db: str
    nats_url: str
    legacy_url: str = ""
    catalog_url: str = ""
    sync_port: int = field(default_factory=free_port)
    legacy_proc: subprocess.Popen[bytes] | None = None
    sync_proc: subprocess.Popen[bytes] | None = None
    legacy_port: int = field(default_factory=free_port)
    admin: dict[str, str] = field(default_factory=dict)
    sync_args: list[str] = field(default_factory=list)  # more of the sync's arguments

    # -- processes --------------------------------------------------------------------------

    def start_legacy(self) -> None:
        env = {**os.environ, "LEGACY_DATABASE_URL": self.legacy_db,
               "LEGACY_PORT": str(self.legacy_port), "LEGACY_OTLP_ENDPOINT": "",
               "LEGACY_ARGON2_TIME_COST": "1", "LEGACY_ARGON2_MEMORY_KIB": "8192",
               "LEGACY_ARGON2_PARALLELISM": "1"}
        self.legacy_url = f"http://127.0.0.1:{self.legacy_port}"
        self.legacy_proc = subprocess.Popen([sys.executable, "-m", "legacy"], env=env,
                                            stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
        _wait_http(f"{self.legacy_url}/health/ready", self.legacy_proc, "legacy")

    def start_sync(self) -> None:
        env = {**os.environ, "SYNC_SIGNING_KEY": SYNC_KEY}
        self.sync_proc = subprocess.Popen(
            [sys.executable, "-m", "mercato.migration.sync", "--port", str(self.sync_port),
             "--legacy-dsn", self.legacy_db, "--catalog-url", self.catalog_url,
             "--nats-url", self.nats_url, "--poll-s", "0.1", *self.sync_args],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_http(self.sync("/health/ready"), self.sync_proc, "sync")

    def kill(self, proc: subprocess.Popen[bytes] | None) -> None:
        assert proc is not None and proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        """The sync and the monolith, paused (SIGSTOP) or not."""
        for proc in (self.sync_proc, self.legacy_proc):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
                proc.wait(10)

    def sync(self, path: str) -> str:
        return f"http://127.0.0.1:{self.sync_port}{path}"

    # -- the two sides ----------------------------------------------------------------------

    def legacy_product(self, legacy_id: int) -> dict[str, Any]:
        got = httpx.get(f"{self.legacy_url}/shop/products/{legacy_id}")
        got.raise_for_status()
        return got.json()

    def edit_legacy(self, legacy_id: int, **changes: Any) -> None:
        got = httpx.patch(f"{self.legacy_url}/shop/admin/products/{legacy_id}", json=changes,
                          headers=self.admin)
        assert got.status_code == 200, got.text

    def catalog_product(self, catalog_id: uuid.UUID | str) -> dict[str, Any] | None:
        got = httpx.get(f"{self.catalog_url}/api/catalog/products/{catalog_id}",
                        headers={"Cache-Control": "no-cache"})
        return got.json() if got.status_code == 200 else None

    def edit_catalog(self, catalog_id: uuid.UUID | str, **changes: Any) -> dict[str, Any]:
        got = httpx.patch(f"{self.catalog_url}/api/catalog/products/{catalog_id}",
                          json=changes, headers=ADMIN)
        assert got.status_code == 200, got.text
        return got.json()

    def status(self) -> dict[str, Any]:
        return httpx.get(self.sync("/sync/status")).json()


class ThreadedApp:
    """A service's app served in a thread of the test process."""

    def __init__(self, app: Any, port: int) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the app failed"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


class ThreadedCatalog(ThreadedApp):
    def __init__(self, settings: CatalogSettings) -> None:
        super().__init__(catalog_app(settings, key_source=minter.key_source()), settings.port)


CATEGORIES = ["Kitchen", "Books & Paper", "Garden"]  # no product is in Garden
PRODUCTS = [  # sku, name, category, price
    ("LG-000001", "Blue kettle", 0, "39000"), ("LG-000002", "Cast pan", 0, "52000"),
    ("LG-000003", "Pocket notebook", 1, "4500"), ("LG-000004", "Fountain pen", 1, "88000"),
    ("LG-000005", "Tea towel", 0, "7000"), ("LG-000006", "Atlas", 1, "61000"),
]


@pytest.fixture(scope="module")
def world(pg_server: Any) -> Iterator[World]:
    legacy_db, catalog_db = pg_server.create_database(), pg_server.create_database()
    legacy_upgrade(legacy_db)
    catalog_upgrade(CATALOG_MIGRATIONS, catalog_db)
    cats = [sql(legacy_db, "INSERT INTO categories (name) VALUES ($1) RETURNING id", n)[0][0]
            for n in CATEGORIES]
    for sku, name, cat, price in PRODUCTS:
        pid = sql(legacy_db, "INSERT INTO products (sku, name, description, category_id, "
                  "price) VALUES ($1, $2, 'from the shop', $3, $4::numeric) RETURNING id",
                  sku, name, cats[cat], price)[0][0]
        sql(legacy_db, "INSERT INTO stock (product_id, on_hand) VALUES ($1, 10)", pid)
    # A seeded shop: its rows were loaded with the triggers off, so only a backfill moves them.
    sql(legacy_db, "DELETE FROM legacy_outbox")
    root = tempfile.mkdtemp(prefix="mercato-sync-nats-")
    os.chmod(root, 0o755)
    nats_server = Nats(Path(root), free_port())
    nats_server.start()
    catalog_port = free_port()
    catalog = ThreadedCatalog(CatalogSettings(
        database_url=catalog_db, nats_url=nats_server.url, port=catalog_port,
        seed_demo=False, register_instance=False, otlp_endpoint=None,
        registry_trusted_keys={"sync": SYNC_PUBLIC}))
    w = World(legacy_db, catalog_db, nats_server.url,
              catalog_url=f"http://127.0.0.1:{catalog_port}")
    try:
        catalog.start()
        w.start_legacy()
        email = "admin@shop.test"
        httpx.post(f"{w.legacy_url}/shop/register", json={
            "email": email, "password": PASSWORD, "name": "Admin"}).raise_for_status()
        sql(legacy_db, "UPDATE customers SET is_admin = true WHERE email = $1", email)
        token = httpx.post(f"{w.legacy_url}/shop/login", json={
            "email": email, "password": PASSWORD}).json()["token"]
        w.admin = {"Authorization": f"Bearer {token}"}
        w.start_sync()
        yield w
    finally:
        w.stop()
        catalog.stop()
        nats_server.stop()
        shutil.rmtree(root, ignore_errors=True)


def catalog_id(legacy_id: int) -> uuid.UUID:
    return services_id("products", legacy_id)


def backfill(w: World, capability: str = "catalog") -> dict[str, Any]:
    path = w.sync(f"/sync/backfill?capability={capability}")
    assert httpx.post(path).status_code == 202

    def ended() -> Any:
        state = httpx.get(path).json()
        assert state["state"] != "failed", state
        return state["state"] == "done" and state

    return wait_for(f"the {capability} backfill", ended, 120)


def test_1_backfill_copies_the_shop_once_under_derived_ids(world: World) -> None:
    # Until the first backfill the sync follows neither side (a shop may still be seeded).
    assert world.status()["armed"] is False
    world.edit_legacy(6, description="a big book")
    time.sleep(0.5)
    assert world.catalog_product(catalog_id(6)) is None
    first = backfill(world)
    assert world.status()["armed"] is True
    assert first["done"] == first["total"] == len(PRODUCTS)
    for n, (sku, name, _, price) in enumerate(PRODUCTS, start=1):
        got = world.catalog_product(catalog_id(n))
        assert got is not None and (got["sku"], got["name"], got["price"]["amount"]) == \
            (sku, name, price)
        assert got["version"] == 1
    # The edit made before the backfill is in its copy.
    assert world.catalog_product(catalog_id(6))["description"] == "a big book"  # type: ignore[index]
    slugs = {c["slug"] for c in httpx.get(
        f"{world.catalog_url}/api/catalog/categories").json()["items"]}
    assert slugs == {"kitchen", "books-paper", "garden"}
    garden = next(c for c in httpx.get(f"{world.catalog_url}/api/catalog/categories")
                  .json()["items"] if c["slug"] == "garden")
    assert garden["id"] == str(services_id("categories", 3))  # the ACL reads its legacy id
    # Idempotent: again, nothing is written (no version moves, no event is staged).
    events = len(sql(world.catalog_db, "SELECT 1 FROM outbox"))
    again = backfill(world)
    assert again["done"] == len(PRODUCTS)
    assert len(sql(world.catalog_db, "SELECT 1 FROM outbox")) == events
    assert all(world.catalog_product(catalog_id(n))["version"] == 1  # type: ignore[index]
               for n in range(1, len(PRODUCTS) + 1))


def test_1b_a_backfill_cut_short_by_kill_9_resumes_and_copies_each_product_once(
        world: World) -> None:
    async def load() -> None:  # as the shop's seed loads: triggers off, in one transaction
        conn = await asyncpg.connect(world.legacy_db.replace("+asyncpg", ""))
        try:
            async with conn.transaction():
                await conn.execute("ALTER TABLE products DISABLE TRIGGER products_outbox")
                await conn.execute(
                    "INSERT INTO products (sku, name, category_id, price) SELECT "
                    "'BULK-' || n, 'Bulk item ' || n, (SELECT min(id) FROM categories), 1000 "
                    "FROM generate_series(1, 120) n")
                await conn.execute("ALTER TABLE products ENABLE TRIGGER products_outbox")
        finally:
            await conn.close()

    asyncio.run(load())
    assert httpx.post(world.sync("/sync/backfill")).status_code == 202
    wait_for("a part of the backfill", lambda: httpx.get(world.sync("/sync/backfill")).json()
             .get("done", 0) >= 60)
    world.kill(world.sync_proc)
    kept = sql(world.legacy_db, "SELECT position FROM mercato_sync.checkpoints "
               "WHERE name = 'backfill:catalog'")[0][0]
    assert kept > len(PRODUCTS)  # cut short, its progress saved
    world.start_sync()
    assert httpx.post(world.sync("/sync/backfill")).status_code == 202
    ended = wait_for("the backfill resumed to its end", lambda: (
        s := httpx.get(world.sync("/sync/backfill")).json())["state"] == "done" and s, 120)
    assert ended["resumed_from"] == kept and ended["done"] == ended["total"] == 126
    created = [json.loads(bytes(r["payload"]))["sku"] for r in sql(
        world.catalog_db, "SELECT payload FROM outbox WHERE message_type = "
        "'ProductCreated.v1'")]
    bulk = [sku for sku in created if sku.startswith("BULK-")]
    assert len(bulk) == len(set(bulk)) == 120


def test_2_a_back_office_edit_reaches_the_catalog(world: World) -> None:
    world.edit_legacy(1, name="Blue kettle, 1.7 l", price="41000", description="steel")
    got = wait_for("the legacy edit in the catalog", lambda: (
        p := world.catalog_product(catalog_id(1))) and p["name"] == "Blue kettle, 1.7 l" and p)
    assert got["price"] == {"amount": "41000", "currency": "KRW"}
    assert got["description"] == "steel"
    # Switched off in the shop: discontinued in the catalog; and on again.
    world.edit_legacy(2, active=False)
    wait_for("discontinued", lambda: world.catalog_product(catalog_id(2)) is None)
    world.edit_legacy(2, active=True)
    wait_for("back on sale", lambda: world.catalog_product(catalog_id(2)) is not None)
    # The sync's own writes to the monolith are not sent back: no echo reaches the catalog.
    assert world.catalog_product(catalog_id(1))["version"] == 2  # type: ignore[index]


def test_2b_a_change_committed_after_a_later_one_is_not_lost(world: World) -> None:
    """Outbox ids are allocated before commit: a change to product 1 takes its id, a change
    to product 2 takes the next one and commits first. The sync must wait at the gap, not
    pass it and lose product 1's change; and pass a gap left by a rollback."""
    dsn = world.legacy_db.replace("+asyncpg", "")

    async def scenario() -> None:
        slow, fast = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
        try:
            tx = slow.transaction()
            await tx.start()
            await slow.execute("UPDATE products SET name = 'Kettle, slow commit' WHERE id = 1")
            await fast.execute("UPDATE products SET name = 'Pan, fast commit' WHERE id = 2")
            await asyncio.sleep(1.0)  # ten passes of the reader
            waiting = await asyncio.to_thread(world.catalog_product, catalog_id(2))
            assert waiting is not None and waiting["name"] != "Pan, fast commit"
            await tx.commit()
            # A rolled-back change leaves a gap for good: passed once it cannot be filled.
            tx = slow.transaction()
            await tx.start()
            await slow.execute("UPDATE products SET name = 'never' WHERE id = 1")
            await fast.execute("UPDATE products SET name = 'Pan, after a rollback' "
                               "WHERE id = 2")
            await tx.rollback()
        finally:
            await slow.close()
            await fast.close()

    asyncio.run(scenario())
    wait_for("the slow commit in the catalog", lambda: (
        world.catalog_product(catalog_id(1)) or {}).get("name") == "Kettle, slow commit")
    wait_for("the change after the rollback", lambda: (
        world.catalog_product(catalog_id(2)) or {}).get("name") == "Pan, after a rollback")


def test_2c_a_record_the_catalog_refuses_is_recorded_and_passed_over(world: World) -> None:
    before = world.status()["errors"]["legacy_to_services"]["rejected"]
    world.edit_legacy(5, price="990.50")  # KRW has no minor unit in the catalog
    world.edit_legacy(6, name="Atlas of the world")  # the stream goes on behind it
    wait_for("the next change synced", lambda: (
        world.catalog_product(catalog_id(6)) or {}).get("name") == "Atlas of the world")
    assert world.status()["errors"]["legacy_to_services"]["rejected"] == before + 1
    refused = httpx.get(world.sync("/sync/rejects")).json()["items"][0]
    assert refused["legacy_id"] == 5 and "decimal" in refused["reason"]
    assert world.catalog_product(catalog_id(5))["price"]["amount"] == "7000"  # type: ignore[index]
    world.edit_legacy(5, price="990")  # put right on its side, it syncs
    wait_for("the corrected price", lambda: (world.catalog_product(catalog_id(5)) or {})
             .get("price", {}).get("amount") == "990")


def test_3_a_services_edit_reaches_the_monolith(world: World) -> None:
    world.edit_catalog(catalog_id(3), name="Pocket notebook, dotted",
                       price={"amount": "4900", "currency": "KRW"})
    got = wait_for("the catalog edit in the monolith", lambda: (
        p := world.legacy_product(3))["name"] == "Pocket notebook, dotted" and p)
    assert got["price"] == {"amount": "4900.00", "currency": "KRW"}
    # Its outbox row is tagged, skipped by the sync: the catalog made one version only.
    rows = sql(world.legacy_db, "SELECT origin FROM legacy_outbox WHERE table_name = "
               "'products' AND row_id = '3'")
    assert [r["origin"] for r in rows] == ["mercato-sync"]
    time.sleep(0.5)  # a pass of the outbox reader, which must not write the catalog again
    assert world.catalog_product(catalog_id(3))["version"] == 2  # type: ignore[index]
    # A product born in the services gets a monolith row, and the pair is kept.
    made = httpx.post(f"{world.catalog_url}/api/catalog/products", headers=ADMIN, json={
        "sku": "NEW-1", "name": "Cutting board", "category": "kitchen",
        "price": {"amount": "23000", "currency": "KRW"}}).json()
    row = wait_for("the new product in the monolith", lambda: sql(
        world.legacy_db, "SELECT p.id, p.name, c.name AS category FROM products p JOIN "
        "categories c ON c.id = p.category_id WHERE sku = 'NEW-1'"))
    assert (row[0]["name"], row[0]["category"]) == ("Cutting board", "Kitchen")
    pair = sql(world.legacy_db, "SELECT legacy_id FROM mercato_sync.products "
               "WHERE catalog_id = $1", uuid.UUID(made["id"]))
    assert [p["legacy_id"] for p in pair] == [row[0]["id"]]


def test_3b_a_malformed_event_is_recorded_once_and_the_stream_goes_on(world: World) -> None:
    """An event the sync can never apply (not JSON; no valid product id) is a reject, not
    a retry for ever: the events behind it still sync, and it is not delivered again."""
    import nats

    def errors() -> int:
        return world.status()["errors"]["services_to_legacy"]["rejected"]

    before = errors()

    async def publish() -> None:
        nc = await nats.connect(world.nats_url)
        try:
            js = nc.jetstream()
            await js.publish("catalog.events.product_updated", b"{not json")
            await js.publish("catalog.events.product_updated",
                             json.dumps({"product_id": "not-a-uuid"}).encode())
        finally:
            await nc.close()

    asyncio.run(publish())
    world.edit_catalog(catalog_id(4), name="Desk lamp, brass")
    wait_for("the edit behind them in the monolith",
             lambda: world.legacy_product(4)["name"] == "Desk lamp, brass")
    wait_for("both recorded", lambda: errors() == before + 2)
    reasons = [r["reason"] for r in httpx.get(world.sync("/sync/rejects")).json()["items"]
               if "malformed" in r["reason"]]
    assert len(reasons) == 2 and any("not JSON" in r for r in reasons), reasons
    assert any("product_id" in r for r in reasons), reasons
    time.sleep(2)  # a nak'd event would be back within its backoff
    assert errors() == before + 2


def test_4_both_sides_within_a_second_is_a_conflict_won_by_the_services(world: World) -> None:
    assert world.sync_proc is not None
    before = world.status()["conflicts"]
    # Paused, so neither change is synced before the other is made.
    world.sync_proc.send_signal(signal.SIGSTOP)
    try:
        world.edit_legacy(4, name="Fountain pen (legacy)", description="fine nib")
        world.edit_catalog(catalog_id(4), name="Fountain pen (services)")
    finally:
        world.sync_proc.send_signal(signal.SIGCONT)
    wait_for("both sides equal", lambda: (
        (c := world.catalog_product(catalog_id(4))) and
        (c["name"], c["description"]) == (world.legacy_product(4)["name"],
                                          world.legacy_product(4)["description"])
        and c["name"] == "Fountain pen (services)"))
    # The field only the monolith changed is kept; the one both changed: services' value.
    assert world.legacy_product(4)["description"] == "fine nib"
    wait_for("the conflict counted", lambda: (
        s := world.status())["conflicts"] == before + 1 and s)
    conflict = httpx.get(world.sync("/sync/conflicts")).json()["items"][0]
    assert conflict["legacy_id"] == 4 and conflict["fields"] == ["name"]
    assert conflict["legacy"]["name"] == "Fountain pen (legacy)"
    assert conflict["services"]["name"] == "Fountain pen (services)"
    assert conflict["resolved"]["name"] == "Fountain pen (services)"
    assert conflict["rule"] == "services-win"
    metrics = httpx.get(world.sync("/metrics")).text
    assert f"sync_conflicts_total {float(before + 1)}" in metrics


@contextlib.contextmanager
def migrate_cli(world: World, home: Path) -> Iterator[Callable[..., Any]]:
    """`mercato migrate ...` against the running sync, as a running platform's state names
    it; yields a runner of its commands that returns their output."""
    import fcntl

    from mercato.cli import app
    from typer.testing import CliRunner

    (home / "run").mkdir()
    with open(home / "run" / "supervisor.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (home / "run" / "supervisor.pid").write_text(str(os.getpid()))
        (home / "run" / "state.json").write_text(json.dumps(
            {"urls": {"sync": world.sync("")}}))
        runner = CliRunner()

        def migrate(*args: str, ok: bool = True) -> Any:
            done = runner.invoke(app, ["migrate", *args, "--home", str(home)])
            assert (done.exit_code == 0) == ok, done.output
            return done.output

        yield migrate


def test_4b_the_commands_show_the_sync(world: World, tmp_path: Path) -> None:
    """`mercato migrate backfill|conflicts|status` against the running sync."""
    with migrate_cli(world, tmp_path) as migrate:
        assert "monolith records in step" in migrate("backfill", "catalog")
        listed = json.loads(migrate("conflicts", "--json"))
        assert listed[0]["fields"] == ["name"] and listed[0]["legacy_id"] == 4
        table = migrate("conflicts")
        assert "(services)'" in table and "(legacy)'" in table
        doc = json.loads(migrate("status", "--json"))
        row = next(r for r in doc["capabilities"] if r["capability"] == "catalog")
        assert row["sync"]["conflicts"] >= 1 and "conflicts" in row["sync_lag"]
        assert "errors" in row["sync_lag"] and row["sync"]["linked"] >= len(PRODUCTS)
        # This sync was not given identity's URL: it says so.
        assert "keeps catalog in step, not 'identity'" in migrate("backfill", "identity",
                                                                  ok=False)
        assert "keeps only catalog, identity" in migrate("backfill", "cart", ok=False)


def test_5_kill_9_of_the_sync_and_of_the_monolith_loses_nothing_applies_nothing_twice(
        world: World) -> None:
    names = [f"Tea towel v{i}" for i in range(12)]
    catalog_names = [f"Atlas v{i}" for i in range(6)]
    for i, name in enumerate(names):
        world.edit_legacy(5, name=name)
        if i == 3:
            world.kill(world.sync_proc)  # mid-stream
        if i == 6:
            world.kill(world.legacy_proc)  # the shop dies between two edits
            world.start_legacy()
        if i == 8:
            world.start_sync()
            world.kill(world.sync_proc)  # again, just after it started
    # Services edits while the sync is down reach the monolith once it is back.
    for name in catalog_names:
        world.edit_catalog(catalog_id(6), name=name)
    world.start_sync()
    wait_for("the last legacy edit in the catalog", lambda: (
        world.catalog_product(catalog_id(5)) or {}).get("name") == names[-1])
    wait_for("the last catalog edit in the monolith", lambda: world.legacy_product(6)["name"]
             == catalog_names[-1])
    # No state written twice, none out of order: the catalog's events for product 5 name
    # edits of the monolith, each once, in the order they were made.
    staged = [doc["name"] for r in sql(
        world.catalog_db, "SELECT payload FROM outbox WHERE message_type = "
        "'ProductUpdated.v1' ORDER BY id")
        if (doc := json.loads(bytes(r["payload"])))["product_id"] == str(catalog_id(5))]
    assert staged and len(staged) == len(set(staged)), staged
    assert staged == [n for n in names if n in staged] and staged[-1] == names[-1]
    written = [json.loads(r["changed"])["name"] for r in sql(
        world.legacy_db, "SELECT changed FROM legacy_outbox WHERE table_name = 'products' "
        "AND row_id = '6' AND origin = 'mercato-sync' AND changed ? 'name' ORDER BY id")]
    assert written and len(written) == len(set(written)), written
    assert written[-1] == catalog_names[-1]
    time.sleep(0.5)
    assert world.catalog_product(catalog_id(6))["name"] == catalog_names[-1]  # type: ignore[index]
