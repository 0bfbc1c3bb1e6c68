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
