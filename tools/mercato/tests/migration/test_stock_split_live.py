"""The stock split (ADR 0034) on real pieces: the monolith in its own process over an
embedded PostgreSQL database with the payment provider simulator, the inventory service
(uvicorn, in a thread) over its own database, and the rebalancer as ``python -m
mercato.migration.stock``, which a test kills -9 in the middle of a transfer. The services'
checkouts are the inventory's own reservations (reserve, then commit), as the order saga
makes them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn
from chassis.db import Database
from chassis.migrations import upgrade_to_head
from chassis.registry_keys import new_key_pair
from chassis.testing import TokenMinter
from contracts.inventory.v1 import CommitReservation, ReserveStock, StockLine
from inventory.app import MIGRATIONS_DIR as INVENTORY_MIGRATIONS
from inventory.app import create_app as inventory_app
from inventory.domain.model import RESERVED, Policy
from inventory.service_layer.handlers import commit_reservation, reserve_stock
from inventory.settings import InventorySettings
from legacy.migrate import upgrade_to_head as legacy_upgrade
from mercato.cli.migrate import stock_split_line
from mercato.migration.commands import Platform, stock_split
from mercato.migration.flags import key, write_flags
from mercato.migration.stock.check import check
from mercato.runtime.paths import free_port
from mercato.testing.infra import serving
from test_sync import _wait_http, call, sql, wait_for

pytestmark = pytest.mark.integration

SYNC_KEY, SYNC_PUBLIC = new_key_pair()
PASSWORD = "correct horse battery"
APPROVE = "4242424242424242"
PROVIDER_TOKEN = "stock-split-provider-token"
minter = TokenMinter()


class ThreadedInventory:
    def __init__(self, settings: InventorySettings) -> None:
        app = inventory_app(settings, key_source=minter.key_source())
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "inventory failed"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@dataclass
class Split:
    legacy_db: str
    inventory_db: str
    legacy_url: str
    inventory_url: str
    flags: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    buyers: list[dict[str, str]] = field(default_factory=list)
    category: int = 0

    def start(self, step_pause_s: float = 0.0) -> None:
        env = {**os.environ, "SYNC_SIGNING_KEY": SYNC_KEY}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mercato.migration.stock", "--port", str(self.port),
             "--legacy-dsn", self.legacy_db, "--inventory-url", self.inventory_url,
             "--flags", str(self.flags), "--interval-s", "0.05",
             "--step-pause-s", str(step_pause_s)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_http(f"http://127.0.0.1:{self.port}/health/ready", self.proc, "stock split")

    def stop(self, *, kill: bool = False) -> None:
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.proc.wait(15)
        self.proc = None

    def share(self, percent: int) -> None:
        write_flags(self.flags, {key("checkout", "percent"): percent})

    def status(self) -> dict[str, Any]:
        return call("GET", f"http://127.0.0.1:{self.port}/stock/status").json()

    def product(self, sku: str, on_hand: int) -> int:
        pid = sql(self.legacy_db, "INSERT INTO products (sku, name, category_id, price) "
                  "VALUES ($1, $1, $2, 1000) RETURNING id", sku, self.category)[0][0]
        sql(self.legacy_db, "INSERT INTO stock (product_id, on_hand) VALUES ($1, $2)",
            pid, on_hand)
        return int(pid)

    def legacy_units(self, pid: int) -> int:
        return int(sql(self.legacy_db, "SELECT on_hand FROM stock WHERE product_id = $1",
                       pid)[0][0])

    def legacy_units_all(self) -> int:
        return int(sql(self.legacy_db, "SELECT sum(s.on_hand) FROM stock s JOIN "
                       "legacy_stock_split x ON x.product_id = s.product_id")[0][0])

    def services_all(self) -> int:
        return int(sql(self.inventory_db, "SELECT coalesce(sum(on_hand), 0) FROM stock")[0][0])

    def services(self, sku: str) -> dict[str, int]:
        got = call("GET", f"{self.inventory_url}/api/inventory/stock/{sku}")
        return got.json() if got.status_code == 200 else {"on_hand": 0, "reserved": 0,
                                                          "available": 0}

    def conserved(self) -> list[Any]:
        units, broken = asyncio.run(check(self.legacy_db, self.inventory_db))
        assert broken == [], broken
        return units

    def quiet(self) -> None:
        """No transfer open and a pass ended since now."""
        since = time.time()
        wait_for("a quiet split", lambda: (doc := self.status())["open"] == 0
                 and doc["last_pass"].get("at", 0) > since and not doc["last_pass"].get("error"))


@pytest.fixture(scope="module")
def split(pg_server: Any) -> Iterator[Split]:
    legacy_db, inventory_db = pg_server.create_database(), pg_server.create_database()
    legacy_upgrade(legacy_db)
    upgrade_to_head(INVENTORY_MIGRATIONS, inventory_db)
    root = Path(tempfile.mkdtemp(prefix="mercato-stock-split-"))
    provider_port, legacy_port, inventory_port = free_port(), free_port(), free_port()
    provider_env = {**os.environ, "PAYMENTS_PROVIDER_PORT": str(provider_port),
                    "PAYMENTS_PROVIDER_DATA_DIR": str(root / "provider"),
                    "PAYMENTS_PROVIDER_API_TOKEN": PROVIDER_TOKEN}
    inventory = ThreadedInventory(InventorySettings(
        database_url=inventory_db, nats_url="", port=inventory_port, register_instance=False,
        otlp_endpoint=None, expiry_interval_s=0, registry_trusted_keys={"sync": SYNC_PUBLIC}))
    legacy_env = {**os.environ, "LEGACY_DATABASE_URL": legacy_db,
                  "LEGACY_PORT": str(legacy_port), "LEGACY_OTLP_ENDPOINT": "",
                  "LEGACY_PROVIDER_URL": f"http://127.0.0.1:{provider_port}",
                  "LEGACY_PROVIDER_API_TOKEN": PROVIDER_TOKEN,
                  "LEGACY_ARGON2_TIME_COST": "1", "LEGACY_ARGON2_MEMORY_KIB": "8192",
                  "LEGACY_ARGON2_PARALLELISM": "1"}
    with serving([sys.executable, "-m", "simulators.payment_provider"], provider_env,
                 f"http://127.0.0.1:{provider_port}/health", timeout=20), \
            serving([sys.executable, "-m", "legacy"], legacy_env,
                    f"http://127.0.0.1:{legacy_port}/health/ready", timeout=30):
        inventory.start()
        s = Split(legacy_db, inventory_db, f"http://127.0.0.1:{legacy_port}",
                  f"http://127.0.0.1:{inventory_port}", root / "flags.json")
        s.category = sql(legacy_db, "INSERT INTO categories (name) VALUES ('Kitchen') "
                         "RETURNING id")[0][0]
        for n in range(4):
            email = f"buyer{n}@shop.test"
            call("POST", f"{s.legacy_url}/shop/register", {
                "email": email, "password": PASSWORD, "name": "Buyer"}).raise_for_status()
            token = call("POST", f"{s.legacy_url}/shop/login",
                         {"email": email, "password": PASSWORD}).json()["token"]
            auth = {"Authorization": f"Bearer {token}"}
            address = call("POST", f"{s.legacy_url}/shop/addresses", {
                "recipient": "Buyer", "line1": "1 Test-ro", "city": "Seoul",
                "postal_code": "04100"}, auth).json()["id"]
            s.buyers.append({**auth, "address_id": str(address)})
        try:
            yield s
        finally:
            if s.proc is not None and s.proc.poll() is None:
                s.proc.terminate()
                s.proc.wait(10)
            inventory.stop()


# -- the two kinds of checkout ------------------------------------------------------------------

async def legacy_checkout(http: aiohttp.ClientSession, s: Split, buyer: dict[str, str],
                          pid: int) -> bool:
    async with http.post(f"{s.legacy_url}/shop/checkout", json={
            "address_id": int(buyer["address_id"]), "card_number": APPROVE,
            "items": [{"product_id": pid, "quantity": 1}]},
            headers={"Authorization": buyer["Authorization"],
                     "Idempotency-Key": str(uuid.uuid4())}) as resp:
        body = await resp.text()
        assert resp.status in (201, 409), body
        return resp.status == 201


async def services_checkout(db: Database, sku: str) -> bool:
    """What the saga asks of the inventory for an order of one unit: reserve, then commit."""
    rid = str(uuid.uuid4())
    async with db.unit_of_work() as uow:
        got = await reserve_stock(uow.session, ReserveStock(
            reservation_id=rid, order_id=rid, lines=[StockLine(sku=sku, quantity=1)]),
            Policy())
        await uow.commit()
    if got.status != RESERVED:
        return False
    async with db.unit_of_work() as uow:
        await commit_reservation(uow.session, CommitReservation(reservation_id=rid))
        await uow.commit()
    return True


# -- tests ---------------------------------------------------------------------------------------

def test_1_concurrent_checkouts_on_both_sides_never_oversell(split: Split) -> None:
    pid, sku, units = split.product("SPLIT-A", 24), "SPLIT-A", 24
    split.share(50)
    split.start()
    wait_for("units on the services' side", lambda: split.services(sku)["available"] > 0)
    sold = {"legacy": 0, "services": 0}

    async def run() -> None:
        db = Database(split.inventory_db, pool_size=4)
        stop = asyncio.Event()
        try:
            async with aiohttp.ClientSession() as http:
                async def legacy_buyer(buyer: dict[str, str]) -> None:
                    while not stop.is_set():
                        if await legacy_checkout(http, split, buyer, pid):
                            sold["legacy"] += 1
                        await asyncio.sleep(0.02)

                async def services_buyer() -> None:
                    while not stop.is_set():
                        if await services_checkout(db, sku):
                            sold["services"] += 1
                        await asyncio.sleep(0.02)

                async def flipper() -> None:  # the share swings while both sides sell
                    n = 0
                    while not stop.is_set():
                        split.share((20, 80, 50, 100, 0)[n % 5])
                        n += 1
                        await asyncio.sleep(0.15)
                    split.share(50)

                tasks = [asyncio.create_task(legacy_buyer(b)) for b in split.buyers[:2]]
                tasks += [asyncio.create_task(services_buyer()) for _ in range(2)]
                tasks.append(asyncio.create_task(flipper()))
                deadline = time.monotonic() + 40
                while sum(sold.values()) < units and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                stop.set()
                await asyncio.gather(*tasks)
        finally:
            await db.dispose()

    asyncio.run(run())
    split.quiet()
    # Every unit sold once, on one side or the other; none twice, none lost.
    assert sum(sold.values()) == units, sold
    assert sold["legacy"] > 0 and sold["services"] > 0, sold
    assert split.legacy_units(pid) == 0 and split.services(sku)["on_hand"] == 0
    [u] = [u for u in split.conserved() if u.sku == sku]
    assert (u.started, u.sold_legacy, u.sold_services, u.in_flight) == (
        units, sold["legacy"], sold["services"], 0)
    assert split.status()["moved"]["to_legacy"] > 0  # the swings moved units both ways
    metrics = call("GET", f"http://127.0.0.1:{split.port}/metrics").text
    assert 'stock_split_moved_units_total{direction="to_legacy"}' in metrics
    assert 'stock_split_passes_total{outcome="ok"}' in metrics
    split.stop()


def test_2_a_share_back_to_0_returns_free_units_and_never_reserved_ones(split: Split) -> None:
    pid, sku = split.product("SPLIT-B", 10), "SPLIT-B"
    split.share(50)
    split.start()
    wait_for("half on the services' side", lambda: split.services(sku)["on_hand"] == 5)
    held = str(uuid.uuid4())

    async def reserve() -> None:
        db = Database(split.inventory_db, pool_size=1)
        try:
            async with db.unit_of_work() as uow:
                got = await reserve_stock(uow.session, ReserveStock(
                    reservation_id=held, lines=[StockLine(sku=sku, quantity=2)]), Policy())
                await uow.commit()
            assert got.status == RESERVED
        finally:
            await db.dispose()

    asyncio.run(reserve())
    split.share(0)
    wait_for("the free units back", lambda: split.legacy_units(pid) == 8)
    split.quiet()
    # The two reserved units stay with the order that holds them.
    assert split.services(sku) == {"sku": sku, "on_hand": 2, "available": 0, "reserved": 2}
    assert split.legacy_units(pid) == 8
    split.conserved()
    split.stop()


def test_3_kill_9_in_the_middle_of_transfers_applies_each_exactly_once(split: Split) -> None:
    pids = {f"SPLIT-K{n}": split.product(f"SPLIT-K{n}", 9) for n in range(3)}
    split.share(0)
    split.start()
    split.quiet()  # adopted, all with the monolith
    split.stop()
    for direction, percent in (("to_services", 100), ("to_legacy", 0)):
        split.share(percent)
        split.start(step_pause_s=0.5)
        # The inventory has applied a transfer the monolith's log has not closed yet.
        wait_for(f"a transfer {direction} half done", lambda d=direction: any(
            r["id"] for r in sql(split.legacy_db,
                                 "SELECT id::text AS id FROM legacy_stock_transfers "
                                 "WHERE state IN ('debited', 'pending') AND direction = $1",
                                 d)
            if sql(split.inventory_db, "SELECT 1 FROM stock_adjustments WHERE "
                   "adjustment_id = $1 AND outcome = 'applied'", r["id"])))
        split.stop(kill=True)
        opened = sql(split.legacy_db, "SELECT count(*) FROM legacy_stock_transfers "
                     "WHERE state IN ('debited', 'pending')")[0][0]
        assert opened >= 1
        split.start()
        split.quiet()
        split.conserved()
        want = 9 if percent == 100 else 0
        for sku, pid in pids.items():
            assert split.services(sku)["on_hand"] == want
            assert split.legacy_units(pid) == 9 - want
        split.stop()
    # Each transfer applied once on each side: the inventory's adjustments are the log's.
    log = sql(split.legacy_db, "SELECT id::text, direction, quantity, state FROM "
              "legacy_stock_transfers WHERE sku LIKE 'SPLIT-K%'")
    applied = {r[0]: r[1] for r in sql(split.inventory_db,
                                       "SELECT adjustment_id, delta FROM stock_adjustments "
                                       "WHERE sku LIKE 'SPLIT-K%' AND outcome = 'applied'")}
    assert {r[0]: (1 if r[1] == "to_services" else -1) * r[2] for r in log
            if r[3] == "done"} == applied


def test_4_the_check_catches_a_planted_break(split: Split) -> None:
    split.product("SPLIT-P", 6)
    split.share(50)
    split.start()
    wait_for("half there", lambda: split.services("SPLIT-P")["on_hand"] == 3)
    split.stop()
    split.conserved()
    sql(split.inventory_db, "UPDATE stock SET on_hand = on_hand + 1 WHERE sku = 'SPLIT-P'")
    _, broken = asyncio.run(check(split.legacy_db, split.inventory_db, attempts=1))
    assert {(v.invariant, v.subject.split()[0]) for v in broken} == {
        ("stock.split.services_ledger", "SPLIT-P"), ("stock.split.conservation", "SPLIT-P")}
    sql(split.inventory_db, "UPDATE stock SET on_hand = on_hand - 1 WHERE sku = 'SPLIT-P'")
    split.conserved()
    # A unit slipped into the monolith's stock under the migration's name, with no transfer.
    sql(split.legacy_db, "WITH tag AS (SELECT set_config('legacy.origin', 'mercato-stock', "
        "true)) UPDATE stock SET on_hand = on_hand + 1 FROM tag WHERE product_id = (SELECT "
        "product_id FROM legacy_stock_split WHERE sku = 'SPLIT-P')")
    _, broken = asyncio.run(check(split.legacy_db, split.inventory_db, attempts=1))
    assert {v.invariant for v in broken} == {"stock.split.transfer",
                                            "stock.split.conservation"}
    sql(split.legacy_db, "DELETE FROM legacy_stock_moves WHERE id = (SELECT max(id) FROM "
        "legacy_stock_moves)")
    sql(split.legacy_db, "UPDATE stock SET on_hand = on_hand - 1 WHERE product_id = (SELECT "
        "product_id FROM legacy_stock_split WHERE sku = 'SPLIT-P')")
    sql(split.legacy_db, "DELETE FROM legacy_stock_moves WHERE id = (SELECT max(id) FROM "
        "legacy_stock_moves)")
    split.conserved()


def test_5_a_back_office_receipt_is_a_receipt_that_the_split_spreads(split: Split) -> None:
    pid, sku = split.product("SPLIT-R", 4), "SPLIT-R"
    split.share(50)
    split.start()
    wait_for("half there", lambda: split.services(sku)["on_hand"] == 2)
    admin = "boss@shop.test"
    call("POST", f"{split.legacy_url}/shop/register", {
        "email": admin, "password": PASSWORD, "name": "Boss"}).raise_for_status()
    sql(split.legacy_db, "UPDATE customers SET is_admin = true WHERE email = $1", admin)
    token = call("POST", f"{split.legacy_url}/shop/login",
                 {"email": admin, "password": PASSWORD}).json()["token"]
    put = call("PUT", f"{split.legacy_url}/shop/admin/stock/{pid}", {"on_hand": 12},
               {"Authorization": f"Bearer {token}"})
    assert put.status_code == 200, put.text
    wait_for("the receipt spread", lambda: split.services(sku)["on_hand"] == 7)
    split.quiet()
    [u] = [u for u in split.conserved() if u.sku == sku]
    assert (u.started, u.receipts, u.legacy, u.services) == (4, 10, 7, 7)
    # `mercato migrate status` shows the split as its process reports it.
    doc = stock_split(Platform(True, None, Path("unused"),
                               stock_url=f"http://127.0.0.1:{split.port}"))
    # (failed: cumulative; a transfer back refused because a reservation took the units
    # first, in test 1's race, is a failure the split is meant to have)
    assert doc is not None and doc["open"] == 0 and doc["failed"] == sum(
        sum(v.values()) for k, v in doc["transfers"].items() if k in ("failed", "reverted"))
    assert doc["products"] == int(sql(split.legacy_db,
                                      "SELECT count(*) FROM legacy_stock_split")[0][0])
    units = doc["last_pass"]["units"]
    assert doc["legacy_units"] == split.legacy_units_all() == units["legacy"]
    assert units["services"] == split.services_all() and units["services_reserved"] == int(sql(
        split.inventory_db, "SELECT coalesce(sum(reserved), 0) FROM stock")[0][0])
    line = stock_split_line(doc)
    assert f"monolith owns {doc['legacy_units']} units" in line and "open 0" in line
    split.stop()
    assert stock_split(Platform(True, None, Path("unused"),
                                stock_url=f"http://127.0.0.1:{split.port}")) is None
    assert stock_split_line(None).startswith("stock split: not running")


def test_6_products_born_in_the_services_stay_out_of_the_split(split: Split) -> None:
    async def create_sync_state() -> None:
        import asyncpg
        from mercato.migration.sync import store

        conn = await asyncpg.connect(split.legacy_db.replace("+asyncpg", ""))
        try:
            await store.create(conn)
        finally:
            await conn.close()

    asyncio.run(create_sync_state())
    ours, theirs = split.product("SPLIT-OURS", 4), split.product("SPLIT-THEIRS", 0)
    # The SKU as the catalog keeps it (upper-cased, trimmed); one it refuses stays out.
    split.product(" split-lower ", 2)
    split.product("split lower!", 2)
    base = json.dumps({"sku": "x"})
    sql(split.legacy_db, "INSERT INTO mercato_sync.products (legacy_id, catalog_id, base, "
        "catalog_version) VALUES ($1, legacy_services_id(1, $1), $3::jsonb, 1), "
        "($2, $4, $3::jsonb, 1)", ours, theirs, base, uuid.uuid4())
    split.share(50)
    split.start()
    wait_for("ours spread", lambda: split.services("SPLIT-OURS")["on_hand"] == 2
             and split.services("SPLIT-LOWER")["on_hand"] == 1)
    split.quiet()
    split.stop()
    in_split = {r[0] for r in sql(split.legacy_db, "SELECT sku FROM legacy_stock_split")}
    assert "SPLIT-OURS" in in_split and "SPLIT-THEIRS" not in in_split
    assert "SPLIT-LOWER" in in_split and not any(" " in sku for sku in in_split)
    split.conserved()


def test_7_a_transfer_the_inventory_refuses_is_reverted_once_not_every_pass(
        split: Split) -> None:
    pid, sku = split.product("SPLIT-FULL", 10), "SPLIT-FULL"
    # The inventory holds as many units as it may: a credit of more is refused (422).
    sql(split.inventory_db, "INSERT INTO stock (sku, on_hand) VALUES ($1, 1000000000)", sku)
    split.share(100)
    split.start()
    wait_for("a refused transfer", lambda: sql(
        split.legacy_db, "SELECT count(*) FROM legacy_stock_transfers WHERE sku = $1 "
        "AND state = 'reverted'", sku)[0][0] >= 1)
    for _ in range(3):
        split.quiet()  # passes go by
    split.stop()
    rows = sql(split.legacy_db, "SELECT state FROM legacy_stock_transfers WHERE sku = $1", sku)
    assert [r[0] for r in rows] == ["reverted"]
    assert split.legacy_units(pid) == 10  # the debit was given back with the revert
    units = {u.sku: u for u in split.conserved()}
    assert units[sku].started == 10 + 1_000_000_000 and units[sku].in_flight == 0
