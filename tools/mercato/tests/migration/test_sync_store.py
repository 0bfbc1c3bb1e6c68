"""The sync's state on a real PostgreSQL: its schema made twice is fine, and a conflict
resolved again after a crash is recorded once."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import asyncpg
import pytest
from mercato.migration.sync import store
from mercato.migration.sync.records import Record

pytestmark = pytest.mark.integration

BASE = Record(sku="LG-1", name="Kettle", description="", category="kitchen",
              price="39000.00", currency="KRW", active=True)


def test_a_conflict_resolved_twice_is_recorded_once(fresh_database: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(fresh_database.replace("+asyncpg", ""))
        try:
            await store.create(conn)
            await store.create(conn)  # every start makes it, idempotently
            legacy, services = replace(BASE, name="L"), replace(BASE, name="S")
            pid = uuid.uuid4()
            assert await store.record_conflict(conn, 1, pid, ("name",), BASE, legacy,
                                               services, services)
            assert not await store.record_conflict(conn, 1, pid, ("name",), BASE, legacy,
                                                   services, services)
            other = replace(BASE, name="L2")
            assert await store.record_conflict(conn, 1, pid, ("name",), BASE, other,
                                               services, services)
            listed = await store.conflicts(conn, 10)
            assert [c["legacy"]["name"] for c in listed] == ["L2", "L"]
            assert listed[1]["base"]["name"] == "Kettle" and listed[1]["rule"] == "services-win"
            await store.save_link(conn, 1, pid, services, 3)
            link = await store.link(conn, catalog_id=pid)
            assert link is not None and (link.legacy_id, link.base, link.catalog_version) == (
                1, services, 3)
            # Made again in the monolith under a new id: the pair moves, the catalog id stays.
            await store.save_link(conn, 9, pid, services, 3)
            assert await store.link(conn, legacy_id=1) is None
            moved = await store.link(conn, catalog_id=pid)
            assert moved is not None and moved.legacy_id == 9
        finally:
            await conn.close()

    asyncio.run(run())


def test_the_outbox_keeps_what_the_sync_has_not_passed_and_what_is_recent(
        fresh_database: str) -> None:
    """The monolith's outbox is pruned of rows the sync passed long ago; it used to grow
    without end (a row for every change the shop makes)."""
    from legacy.migrate import upgrade_to_head

    upgrade_to_head(fresh_database)

    async def run() -> None:
        conn = await asyncpg.connect(fresh_database.replace("+asyncpg", ""))
        try:
            await store.create(conn)
            ages = {1: 30, 2: 30, 3: 30, 4: 0, 5: 30, 6: 30}  # days old, by id
            for row_id, days in ages.items():
                await conn.execute(
                    "INSERT INTO legacy_outbox (id, table_name, op, row_id, changed, "
                    "created_at) VALUES ($1, 'products', 'UPDATE', '1', '{}', "
                    "now() - make_interval(days => $2))", row_id, days)
            await store.save_checkpoint(conn, "legacy_outbox", 4)  # passed 1-4
            assert await store.prune_outbox(conn, 7 * 86400, batch=2) == 3
            left = await conn.fetch("SELECT id FROM legacy_outbox ORDER BY id")
            # 4 is passed but recent; 5 and 6 are old but not passed yet.
            assert [r["id"] for r in left] == [4, 5, 6]
            assert await store.prune_outbox(conn, 7 * 86400) == 0
        finally:
            await conn.close()

    asyncio.run(run())


def test_a_gap_filled_between_the_snapshot_and_the_read_is_not_passed(
        fresh_database: str) -> None:
    """The race behind a lost monolith change (test_sync's 2b failed once in CI): outbox ids
    are taken before commit, so a slow change leaves a gap behind a fast one. If the slow one
    commits while the reader reads, the gap must be waited at, never passed as a rollback.
    Here it commits right after the reader's read, every time."""
    from legacy.migrate import upgrade_to_head
    from mercato.migration.sync.engine import Sync

    upgrade_to_head(fresh_database)
    dsn = fresh_database.replace("+asyncpg", "")

    async def run() -> None:
        slow, fast = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                await store.create(conn)
            insert = ("INSERT INTO legacy_outbox (table_name, op, row_id, changed) "
                      "VALUES ('products', 'UPDATE', $1, '{}')")
            slow_tx = slow.transaction()
            await slow_tx.start()
            await slow.execute(insert, "1")  # takes id 1, commits later
            await fast.execute(insert, "2")  # takes id 2, commits now

            class CommitsAfterTheRead:
                """The pool, with the slow change committing right after the outbox read."""

                def acquire(self):  # type: ignore[no-untyped-def]
                    return _Hooked(pool.acquire())

            class _Hooked:
                def __init__(self, inner):  # type: ignore[no-untyped-def]
                    self.inner = inner

                async def __aenter__(self):  # type: ignore[no-untyped-def]
                    return _Conn(await self.inner.__aenter__())

                async def __aexit__(self, *exc):  # type: ignore[no-untyped-def]
                    return await self.inner.__aexit__(*exc)

            class _Conn:
                def __init__(self, conn):  # type: ignore[no-untyped-def]
                    self.conn = conn

                def __getattr__(self, name):  # type: ignore[no-untyped-def]
                    return getattr(self.conn, name)

                async def fetch(self, query, *args):  # type: ignore[no-untyped-def]
                    rows = await self.conn.fetch(query, *args)
                    if "FROM legacy_outbox" in query and slow.is_in_transaction():
                        await slow_tx.commit()
                    return rows

            sync = Sync(CommitsAfterTheRead(), catalog=None)  # type: ignore[arg-type]
            sync.following = set()  # pass rows over: only the reader's walk is under test
            first = await sync.pump_legacy()
            second = await sync.pump_legacy()
            # The first pass waits at the gap (row 1 was running when it looked); the next
            # one reads both. Passing the gap would have walked past row 1 for good.
            assert (first, second) == (0, 2)
            async with pool.acquire() as conn:
                assert await store.checkpoint(conn, "legacy_outbox") == 2
        finally:
            await pool.close()
            await slow.close()
            await fast.close()

    asyncio.run(run())
