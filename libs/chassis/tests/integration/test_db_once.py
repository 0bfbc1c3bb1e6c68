"""``Database.fetch_once`` / ``execute_once``: one statement as its own transaction, on a
pooled connection's asyncpg driver, with no BEGIN or COMMIT round trip (PostgreSQL commits a
statement sent outside a transaction block by itself), against a real PostgreSQL."""

from __future__ import annotations

import pytest
from chassis.db import Database
from chassis.errors import dependency_unavailable
from chassis.testing import backend_pid, metadata_database_fixture
from mercato.testing.infra import PgServer
from sqlalchemy import MetaData, text
from sqlalchemy.exc import DBAPIError, IntegrityError

pytestmark = pytest.mark.integration

db = metadata_database_fixture(
    MetaData(), "CREATE TABLE counters (name text PRIMARY KEY, value int NOT NULL)")

INSERT = "INSERT INTO counters (name, value) VALUES ($1, $2)"
BUMP = "UPDATE counters SET value = value + 1 WHERE name = $1 RETURNING value"




async def committed(db: Database) -> dict[str, int]:
    """What another connection sees."""
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT name, value FROM counters"))).all()
    return {name: value for name, value in rows}


async def test_a_statement_once_is_committed_by_itself_with_no_begin_or_commit_sent(
        db: Database, pg_server: PgServer) -> None:
    name = db.engine.url.database
    assert name is not None
    with pg_server.statements_logged(name) as logged:
        one = Database(db.engine.url.render_as_string(hide_password=False), pool_size=1)
        try:
            pid = await backend_pid(one)  # the engine's first connection asks its own questions
            sent_before = len(logged(pid))
            assert await one.execute_once(INSERT, "a", 1) == 1
            assert await committed(db) == {"a": 1}  # visible to others at once
            assert [r["value"] for r in await one.fetch_once(BUMP, "a")] == [2]
            assert await committed(db) == {"a": 2}
            # A statement PostgreSQL refuses inside a transaction block runs.
            await one.execute_once("VACUUM counters")
            assert await backend_pid(one) == pid  # all on one pooled connection
            sent = logged(pid)[sent_before:]
        finally:
            await one.dispose()
    # What the server was sent: each statement alone, no BEGIN, no COMMIT.
    assert [s.split(": ", 1)[1] for s in sent] == [
        INSERT, BUMP, "VACUUM counters", "SELECT pg_backend_pid() AS pid"], sent


async def test_a_failed_statement_writes_nothing_and_fails_as_sqlalchemy_would(
        db: Database, one: Database) -> None:
    await one.execute_once(INSERT, "taken", 1)
    with pytest.raises(IntegrityError):  # chassis.errors answers a 409 for it
        await one.execute_once("INSERT INTO counters (name, value) VALUES ('new', 1), "
                               "('taken', 1)")
    assert await committed(db) == {"taken": 1}  # the row before the failing one went too
    # The connection is usable again: no failed transaction was left on it.
    assert await one.execute_once(INSERT, "new", 1) == 1


async def test_the_connection_goes_back_to_the_pool_with_no_transaction_open(
        db: Database, one: Database) -> None:
    pid = await backend_pid(one)
    await one.execute_once(INSERT, "a", 1)
    with pytest.raises(IntegrityError):
        await one.execute_once(INSERT, "a", 1)
    assert one.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    async with db.engine.connect() as other:
        state = (await other.execute(text(
            "SELECT state, backend_xid FROM pg_stat_activity WHERE pid = :pid"),
            {"pid": pid})).one()
    assert tuple(state) == ("idle", None)  # not "idle in transaction (aborted)"
    assert await backend_pid(one) == pid


async def test_a_connection_lost_under_a_statement_once_is_replaced(
        db: Database, one: Database) -> None:
    # As for the statements in a unit of work (ADR 0047): after a PostgreSQL restart the
    # dead connection is dropped, not handed out again on every call.
    pid = await backend_pid(one)
    await db.fetch_once("SELECT pg_terminate_backend($1)", pid)
    with pytest.raises(DBAPIError) as lost:
        await one.fetch_once("SELECT 1")
    assert lost.value.connection_invalidated
    assert dependency_unavailable(lost.value)  # a 503, and _record_sent's retry
    assert await backend_pid(one) != pid


async def test_the_readiness_ping_and_the_running_sagas_count_are_one_statement_each(
        db: Database, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked every few seconds by every instance (Envoy's health checks, the orders service's
    admission control): one round trip each, no BEGIN and no ROLLBACK around it."""
    import chassis.db as chassis_db
    from chassis.saga import count_running_now, saga_tables

    monkeypatch.setattr(chassis_db, "ANSWER_COUNTS_FOR_S", 0.0)  # the ping always asks here

    name = db.engine.url.database
    assert name is not None
    sagas = MetaData()
    saga_tables(sagas)
    async with db.engine.begin() as conn:
        await conn.run_sync(sagas.create_all)
    with pg_server.statements_logged(name) as logged:
        one = Database(db.engine.url.render_as_string(hide_password=False), pool_size=1)
        try:
            pid = await backend_pid(one)
            sent_before = len(logged(pid))
            await one.ping()
            assert await count_running_now(one, ["order"]) == 0
            sent = logged(pid)[sent_before:]
        finally:
            await one.dispose()
    assert len(sent) == 2, sent
    assert not [s for s in sent if "BEGIN" in s or "ROLLBACK" in s or "COMMIT" in s], sent
