"""Outbox rows are written at commit (chassis.db.write_at_commit): with the transaction's
state change, in the order they were staged, never after a rollback, and a savepoint's own
rows go with the savepoint."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from chassis.db import Database
from chassis.messaging.outbox import stage
from chassis.messaging.tables import outbox_table
from sqlalchemy import MetaData, text

pytestmark = pytest.mark.integration

metadata = MetaData()
outbox_table(metadata)


@pytest.fixture
async def db(fresh_database: str) -> AsyncIterator[Database]:
    database = Database(fresh_database)
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield database
    await database.dispose()


async def subjects(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        return list((await conn.execute(text("SELECT subject FROM outbox ORDER BY id")))
                    .scalars())


async def test_staged_rows_are_written_at_commit_in_staging_order(db: Database) -> None:
    async with db.unit_of_work() as uow:
        for n in range(5):
            await stage(uow.session, f"t.events.e{n}", "E.v1", {"n": n})
        # Not written yet: one statement writes them all just before COMMIT.
        assert (await uow.session.execute(text("SELECT count(*) FROM outbox"))).scalar() == 0
        await uow.commit()
    assert await subjects(db) == [f"t.events.e{n}" for n in range(5)]


async def test_a_rolled_back_transaction_leaves_no_row_behind(db: Database) -> None:
    async with db.unit_of_work() as uow:
        await stage(uow.session, "t.events.lost", "E.v1", {})
        await uow.rollback()
        await stage(uow.session, "t.events.kept", "E.v1", {})
        await uow.commit()
    async with db.unit_of_work() as uow:  # left without commit: rolled back
        await stage(uow.session, "t.events.abandoned", "E.v1", {})
    assert await subjects(db) == ["t.events.kept"]


async def test_a_savepoint_rolls_back_its_own_rows_and_keeps_the_outer_ones(
        db: Database) -> None:
    async with db.unit_of_work() as uow:
        await stage(uow.session, "t.events.before", "E.v1", {})
        with pytest.raises(RuntimeError):
            async with uow.session.begin_nested():
                await stage(uow.session, "t.events.inside", "E.v1", {})
                raise RuntimeError("the savepoint's work fails")
        async with uow.session.begin_nested():
            await stage(uow.session, "t.events.inside_ok", "E.v1", {})
        await stage(uow.session, "t.events.after", "E.v1", {})
        await uow.commit()
    assert sorted(await subjects(db)) == sorted(
        ["t.events.before", "t.events.inside_ok", "t.events.after"])


async def test_the_commit_sends_one_notify_for_the_relay(db: Database,
                                                         fresh_database: str) -> None:
    import asyncpg
    from chassis.messaging.relay import asyncpg_dsn
    from chassis.messaging.tables import OUTBOX_CHANNEL

    listener = await asyncpg.connect(asyncpg_dsn(fresh_database))
    heard: list[str] = []
    await listener.add_listener(OUTBOX_CHANNEL, lambda *args: heard.append(args[2]))
    try:
        async with db.unit_of_work() as uow:
            await stage(uow.session, "t.events.a", "E.v1", {})
            await stage(uow.session, "t.events.b", "E.v1", {})
            await uow.commit()
        await listener.execute("SELECT 1")  # let the notification arrive
        assert heard == [OUTBOX_CHANNEL]
    finally:
        await listener.close()
