"""Identity's accounts and addresses synced both ways (ADR 0031), on real pieces as in
test_sync: the monolith in its own process, the catalog and identity services in threads
(identity's outbox relay publishing to a JetStream server of this module's own), and the
sync as ``python -m mercato.migration.sync --identity-url ...``, which the tests pause,
kill -9 and start again."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from argon2 import PasswordHasher
from catalog.app import MIGRATIONS_DIR as CATALOG_MIGRATIONS
from catalog.settings import CatalogSettings
from chassis.migrations import upgrade_to_head
from identity.app import MIGRATIONS_DIR as IDENTITY_MIGRATIONS
from identity.app import create_app as identity_app
from identity.settings import IdentitySettings
from legacy.migrate import upgrade_to_head as legacy_upgrade
from mercato.migration.ids import services_id
from mercato.runtime.nats import Nats
from mercato.runtime.paths import free_port
from test_sync import (
    PASSWORD,
    SYNC_PUBLIC,
    Resp,
    ThreadedApp,
    ThreadedCatalog,
    World,
    backfill,
    call,
    httpx,
    migrate_cli,
    sql,
    wait_for,
)

pytestmark = pytest.mark.integration

IDENTITY = "/api/identity"


class People(World):
    identity_db: str = ""
    identity_url: str = ""

    # -- the monolith -----------------------------------------------------------------------

    def legacy_signup(self, email: str, name: str) -> tuple[int, dict[str, str]]:
        made = httpx.post(f"{self.legacy_url}/shop/register",
                          json={"email": email, "password": PASSWORD, "name": name})
        assert made.status_code == 201, made.text
        return int(made.json()["id"]), self.legacy_login(email)

    def legacy_login(self, email: str) -> dict[str, str]:
        got = httpx.post(f"{self.legacy_url}/shop/login",
                         json={"email": email, "password": PASSWORD})
        assert got.status_code == 200, got.text
        return {"Authorization": f"Bearer {got.json()['token']}"}

    def customer(self, email: str) -> dict[str, Any] | None:
        rows = sql(self.legacy_db, "SELECT id, name, services_id, password_hash FROM "
                   "customers WHERE lower(email) = lower($1)", email)
        return dict(rows[0]) if rows else None

    # -- identity ---------------------------------------------------------------------------

    def identity_login(self, email: str, password: str = PASSWORD) -> Resp:
        data = urllib.parse.urlencode({"grant_type": "password", "username": email,
                                       "password": password}).encode()
        req = urllib.request.Request(f"{self.identity_url}{IDENTITY}/token", data=data,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return Resp(resp.status, resp.read().decode())
        except urllib.error.HTTPError as exc:
            return Resp(exc.code, exc.read().decode())

    def identity_auth(self, email: str) -> dict[str, str]:
        got = self.identity_login(email)
        assert got.status_code == 200, got.text
        return {"Authorization": f"Bearer {got.json()['access_token']}"}

    def account(self, user_id: uuid.UUID | str) -> dict[str, Any] | None:
        """identity's account row and its addresses, read from its database."""
        rows = sql(self.identity_db, "SELECT id, email, name, password_hash FROM users "
                   "WHERE id = $1", uuid.UUID(str(user_id)))
        if not rows:
            return None
        found = dict(rows[0])
        found["addresses"] = {r["id"]: dict(r) for r in sql(
            self.identity_db, "SELECT * FROM addresses WHERE user_id = $1", found["id"])}
        return found

    def identity_events(self, message_type: str) -> list[dict[str, Any]]:
        return [json.loads(bytes(r["payload"])) for r in sql(
            self.identity_db, "SELECT payload FROM outbox WHERE message_type = $1 "
            "ORDER BY id", message_type)]


@pytest.fixture(scope="module")
def world(pg_server: Any) -> Iterator[People]:
    legacy_db, catalog_db, identity_db = (pg_server.create_database() for _ in range(3))
    legacy_upgrade(legacy_db)
    upgrade_to_head(CATALOG_MIGRATIONS, catalog_db)
    upgrade_to_head(IDENTITY_MIGRATIONS, identity_db)
    root = tempfile.mkdtemp(prefix="mercato-idsync-nats-")
    os.chmod(root, 0o755)
    nats_server = Nats(Path(root), free_port())
    nats_server.start()
    catalog_port, identity_port = free_port(), free_port()
    catalog = ThreadedCatalog(CatalogSettings(
        database_url=catalog_db, nats_url=nats_server.url, port=catalog_port,
        seed_demo=False, register_instance=False, otlp_endpoint=None,
        registry_trusted_keys={"sync": SYNC_PUBLIC}))
    # argon2 at its cheapest, and not the monolith's cost: a legacy hash is verified as it
    # is, then upgraded at the first sign-in.
    settings = IdentitySettings(
        database_url=identity_db, nats_url=nats_server.url, port=identity_port,
        register_instance=False, otlp_endpoint=None, argon2_time_cost=1,
        argon2_memory_cost_kib=8, argon2_parallelism=1, signing_key_publish_lead_s=0.0,
        registry_trusted_keys={"sync": SYNC_PUBLIC})
    identity = ThreadedApp(identity_app(settings), identity_port)
    w = People(legacy_db, catalog_db, nats_server.url,
               catalog_url=f"http://127.0.0.1:{catalog_port}")
    w.identity_db, w.identity_url = identity_db, f"http://127.0.0.1:{identity_port}"
    w.sync_args = ["--identity-url", w.identity_url]
    try:
        catalog.start()
        identity.start()
        w.start_legacy()
        w.start_sync()
        yield w
    finally:
        w.stop()
        identity.stop()
        catalog.stop()
        nats_server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_1_the_backfill_brings_the_shops_customers_who_sign_in_with_their_password(
        world: People) -> None:
    cid, auth = world.legacy_signup("Old.Customer@shop.test", "Old Customer")
    added = httpx.post(f"{world.legacy_url}/shop/addresses", headers=auth, json={
        "recipient": "Old Customer", "line1": "1 Jongno", "city": "Seoul",
        "postal_code": "03154"})
    assert added.status_code == 201, added.text
    aid = int(added.json()["id"])
    # Not followed before its first backfill.
    assert world.status()["identity"]["armed"] is False
    assert world.account(services_id("customers", cid)) is None
    first = backfill(world, "identity")
    assert first["done"] == first["total"] == 1
    assert world.status()["identity"]["armed"] is True
    user = services_id("customers", cid)
    got = world.account(user)
    assert got is not None and (got["email"], got["name"]) == ("old.customer@shop.test",
                                                               "Old Customer")
    assert list(got["addresses"]) == [services_id("addresses", aid)]
    # The monolith's hash, verified by identity as it is: the same password signs in.
    assert world.identity_login("old.customer@shop.test").status_code == 200
    # Idempotent: a second run writes nothing (no event staged, the hash upgraded at the
    # sign-in went back to the monolith, which still signs in with it).
    wait_for("the upgraded hash in the monolith", lambda: world.customer(
        "old.customer@shop.test")["password_hash"] == world.account(user)["password_hash"])
    world.legacy_login("old.customer@shop.test")
    events = len(sql(world.identity_db, "SELECT 1 FROM outbox"))
    again = backfill(world, "identity")
    assert again["done"] == 1
    assert len(sql(world.identity_db, "SELECT 1 FROM outbox")) == events


def test_1b_a_backfill_cut_short_by_kill_9_resumes_and_copies_each_account_once(
        world: People) -> None:
    legacy_hash = world.customer("old.customer@shop.test")["password_hash"]  # type: ignore[index]

    async def load() -> None:  # as the shop's seed loads: triggers off, one transaction
        conn = await asyncpg.connect(world.legacy_db.replace("+asyncpg", ""))
        try:
            async with conn.transaction():
                for table in ("customers", "addresses"):
                    await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_outbox")
                await conn.execute(
                    "INSERT INTO customers (email, name, password_hash) SELECT "
                    "'bulk' || n || '@shop.test', 'Bulk ' || n, $1 "
                    "FROM generate_series(1, 120) n", legacy_hash)
                await conn.execute(
                    "INSERT INTO addresses (customer_id, recipient, line1, city, postal_code) "
                    "SELECT id, name, '1 Road', 'Seoul', '04524' FROM customers "
                    "WHERE email LIKE 'bulk%'")
                for table in ("customers", "addresses"):
                    await conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER {table}_outbox")
        finally:
            await conn.close()

    asyncio.run(load())
    path = world.sync("/sync/backfill?capability=identity")
    assert httpx.post(path).status_code == 202
    wait_for("a part of the backfill", lambda: httpx.get(path).json().get("done", 0) >= 60)
    world.kill(world.sync_proc)
    kept = sql(world.legacy_db, "SELECT position FROM mercato_sync.checkpoints "
               "WHERE name = 'backfill:identity'")[0][0]
    assert kept > 1  # cut short, its progress saved
    world.start_sync()
    ended = backfill(world, "identity")
    assert ended["resumed_from"] == kept and ended["done"] == ended["total"] == 121
    made = [e["email"] for e in world.identity_events("AccountRegistered.v1")
            if e["email"].startswith("bulk")]
    assert len(made) == len(set(made)) == 120
    added = len(sql(world.identity_db, "SELECT 1 FROM outbox WHERE message_type = "
                    "'AddressAdded.v1'"))
    assert added == len(sql(world.identity_db, "SELECT 1 FROM addresses")) == 121

    def metric(name: str) -> float:
        for line in httpx.get(world.sync("/metrics")).text.splitlines():
            if line.startswith(f"sync_identity_{name}"):
                return float(line.split()[-1])
        return 0.0

    # The events of the backfill's own writes come back: passed over unread (the accounts'
    # by their version, the addresses' added by the id map), or read and found in step,
    # and nothing is written back to the monolith.
    wait_for("the backfill's events read", lambda: metric('echoes_skipped_total{side="services"}')
             >= 60 and world.status()["identity"]["backlog"]["services_to_legacy"] == 0, 120)
    assert metric('applied_total{side="legacy"}') == 0


def test_2_a_customer_registered_in_the_monolith_signs_in_on_identity(world: People) -> None:
    cid, auth = world.legacy_signup("new.shopper@shop.test", "New Shopper")
    user = services_id("customers", cid)
    wait_for("the account in identity", lambda: world.account(user))
    assert world.identity_login("new.shopper@shop.test").status_code == 200
    added = httpx.post(f"{world.legacy_url}/shop/addresses", headers=auth, json={
        "recipient": "New Shopper", "line1": "5 Haeundae-ro", "city": "Busan",
        "postal_code": "48094"})
    aid = services_id("addresses", int(added.json()["id"]))
    wait_for("the monolith's address in identity", lambda: aid in (
        world.account(user) or {"addresses": {}})["addresses"])
    # As identity serves it to its owner.
    mine = httpx.get(f"{world.identity_url}{IDENTITY}/me/addresses",
                     headers=world.identity_auth("new.shopper@shop.test")).json()["items"]
    assert [(a["id"], a["city"], a["postal_code"]) for a in mine] == [
        (str(aid), "Busan", "48094")]
    # A password changed in the monolith alone (its back office): the outbox says so
    # without the hash, the sync reads the hash from the row.
    new_hash = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("new-pass-1")
    sql(world.legacy_db, "UPDATE customers SET password_hash = $2 WHERE id = $1", cid,
        new_hash)
    wait_for("the new password on identity", lambda: world.identity_login(
        "new.shopper@shop.test", "new-pass-1").status_code == 200)
    assert world.identity_login("new.shopper@shop.test").status_code != 200  # 400 or 429


def test_3_an_account_registered_in_identity_appears_in_the_monolith(world: People) -> None:
    made = call("POST", f"{world.identity_url}{IDENTITY}/register", {
        "email": "born.in@services.test", "password": PASSWORD, "name": "Born In"})
    assert made.status_code == 201, made.text
    user = uuid.UUID(made.json()["id"])
    row = wait_for("the account in the monolith",
                   lambda: world.customer("born.in@services.test"))
    assert row["services_id"] == user and row["name"] == "Born In"
    # identity's hash, which the monolith's own login accepts.
    auth = world.legacy_login("born.in@services.test")
    assert httpx.get(f"{world.legacy_url}/shop/me", headers=auth).json()["name"] == "Born In"
    # Written with the origin tag: not sent back (identity staged one event, its own).
    assert [r["origin"] for r in sql(world.legacy_db, "SELECT origin FROM legacy_outbox "
                                     "WHERE table_name = 'customers' AND row_id = $1",
                                     str(row["id"]))] == ["mercato-sync"]
    added = call("POST", f"{world.identity_url}{IDENTITY}/me/addresses", {
        "name": "Born In", "line1": "9 Gukhoe-daero", "line2": "Apt 3", "city": "Seoul",
        "postal_code": "07233", "country": "KR"},
        headers=world.identity_auth("born.in@services.test"))
    assert added.status_code == 201, added.text
    rows = wait_for("identity's address in the monolith", lambda: sql(
        world.legacy_db, "SELECT id, recipient, city, services_id FROM addresses "
        "WHERE customer_id = $1", row["id"]))
    assert [(r["recipient"], r["city"], r["services_id"]) for r in rows] == [
        ("Born In", "Seoul", uuid.UUID(added.json()["id"]))]
    listed = httpx.get(f"{world.legacy_url}/shop/addresses", headers=auth).json()
    assert [a["line1"] for a in listed] == ["9 Gukhoe-daero"]
    time.sleep(0.5)  # a pass of the outbox reader: the monolith's copy is not sent back
    assert [e for e in world.identity_events("AccountUpdated.v1")
            if e["user_id"] == str(user)] == []
    stored = world.account(user)
    assert stored is not None and stored["addresses"][uuid.UUID(added.json()["id"])][
        "line2"] == "Apt 3"  # kept: the monolith has no column for it


def test_4_a_name_changed_on_both_sides_within_a_second_is_a_conflict_services_win(
        world: People) -> None:
    cid, _ = world.legacy_signup("both.sides@shop.test", "Both Sides")
    user = services_id("customers", cid)
    wait_for("the account in identity", lambda: world.account(user))
    auth = world.identity_auth("both.sides@shop.test")
    # The sign-in upgraded the hash on identity, and its event is on its way (published as
    # identity commits, ADR 0042): wait until the sync has carried it to the monolith, so the
    # sync is not stopped in the middle of that step, holding the monolith's row.
    wait_for("the upgraded hash in the monolith", lambda: world.customer(
        "both.sides@shop.test")["password_hash"] == world.account(user)["password_hash"])
    before = world.status()["identity"]["conflicts"]
    assert world.sync_proc is not None
    world.sync_proc.send_signal(signal.SIGSTOP)  # neither change synced before the other
    try:
        # The monolith's back office edits the row; the customer renames themselves on
        # identity.
        sql(world.legacy_db, "UPDATE customers SET name = 'Both (legacy)' WHERE id = $1", cid)
        renamed = call("PATCH", f"{world.identity_url}{IDENTITY}/me",
                       {"name": "Both (services)"}, headers=auth)
        assert renamed.status_code == 200, renamed.text
    finally:
        world.sync_proc.send_signal(signal.SIGCONT)
    wait_for("the services' name on both sides", lambda: (
        world.customer("both.sides@shop.test")["name"] == "Both (services)"
        and world.account(user)["name"] == "Both (services)"))  # type: ignore[index]
    wait_for("the conflict counted", lambda: world.status()["identity"]["conflicts"]
             == before + 1)
    conflict = next(c for c in httpx.get(world.sync("/sync/conflicts")).json()["items"]
                    if c["kind"] == "accounts")
    assert (conflict["legacy_id"], conflict["fields"]) == (cid, ["name"])
    assert conflict["legacy"]["name"] == "Both (legacy)"
    assert conflict["resolved"]["name"] == "Both (services)"
    assert conflict["rule"] == "services-win"
    # A hash is never shown in a conflict.
    assert "argon2" not in json.dumps(conflict)
    # The catalog's conflicts are the catalog's: none here.
    assert world.status()["catalog"]["conflicts"] == 0


def test_4b_the_commands_show_identitys_sync(world: People, tmp_path: Path) -> None:
    with migrate_cli(world, tmp_path) as migrate:
        assert "monolith records in step" in migrate("backfill", "identity")
        doc = json.loads(migrate("status", "--json"))
        row = next(r for r in doc["capabilities"] if r["capability"] == "identity")
        assert row["sync"]["armed"] is True and row["sync"]["conflicts"] == 1
        assert row["sync"]["linked"] >= 4  # accounts and addresses
        assert "1 conflicts" in row["sync_lag"] and "→svc" in row["sync_lag"]
        catalog = next(r for r in doc["capabilities"] if r["capability"] == "catalog")
        assert catalog["sync_lag"] == "waiting for `mercato migrate backfill catalog`"
        listed = json.loads(migrate("conflicts", "--json"))
        assert [c["kind"] for c in listed] == ["accounts"]
        assert "accounts" in migrate("conflicts")


def test_5_kill_9_of_the_sync_loses_nothing_and_applies_nothing_twice(world: People) -> None:
    cid, _ = world.legacy_signup("kill.nine@shop.test", "Kill v-1")
    user = services_id("customers", cid)
    wait_for("the account in identity", lambda: world.account(user))
    names = [f"Kill v{i}" for i in range(10)]
    for i, name in enumerate(names):
        sql(world.legacy_db, "UPDATE customers SET name = $2 WHERE id = $1", cid, name)
        if i == 3:
            world.kill(world.sync_proc)  # mid-stream
        if i == 6:
            world.start_sync()
            world.kill(world.sync_proc)  # again, just after it started
    # identity's changes while the sync is down reach the monolith once it is back.
    made = call("POST", f"{world.identity_url}{IDENTITY}/register", {
        "email": "while.down@services.test", "password": PASSWORD, "name": "While Down"})
    assert made.status_code == 201
    world.start_sync()
    wait_for("the last monolith name in identity",
             lambda: (world.account(user) or {}).get("name") == names[-1])
    wait_for("identity's account in the monolith",
             lambda: world.customer("while.down@services.test"))
    # Each of the monolith's names reached identity at most once, in order.
    staged = [e["name"] for e in world.identity_events("AccountUpdated.v1")
              if e["user_id"] == str(user)]
    assert staged and len(staged) == len(set(staged)), staged
    assert staged == [n for n in names if n in staged] and staged[-1] == names[-1]
    # And the account born in identity was written into the monolith once.
    assert len(sql(world.legacy_db, "SELECT 1 FROM legacy_outbox WHERE table_name = "
                   "'customers' AND origin = 'mercato-sync' AND op = 'INSERT' AND "
                   "changed ->> 'email' = 'while.down@services.test'")) == 1
    status = world.status()["identity"]
    assert status["errors"]["legacy_to_services"]["rejected"] == 0
    assert "sync_identity_applied_total" in httpx.get(world.sync("/metrics")).text
