"""Round trips a transaction need not cost (ADR 0049), against a real PostgreSQL.

``driver_execute_first``: a transaction's first statement sent with its BEGIN in one round
trip (``BEGIN; <statement with literal values>``): what the server is sent, that commit,
rollback and failure behave as in a transaction begun the usual way, and that values arrive
exactly as given. ``UnitOfWork.reading()``: reads alone, without BEGIN and ROLLBACK."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from chassis.db import (
    Database,
    advisory_xact_lock,
    as_columns,
    driver_execute,
    driver_execute_first,
    driver_fetch,
    flush_pending,
    inserting,
    last_per_key,
    register_deferred,
    write_at_commit,
)
from chassis.testing import backend_pid, metadata_database_fixture
from mercato.testing.infra import PgServer
from sqlalchemy import MetaData, text
from sqlalchemy.exc import DBAPIError, IntegrityError

pytestmark = pytest.mark.integration

db = metadata_database_fixture(
    MetaData(), "CREATE TABLE counters (name text PRIMARY KEY, value int NOT NULL, "
                "ref uuid, at timestamptz)")

INSERT = "INSERT INTO counters (name, value, ref) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
BUMP = "UPDATE counters SET value = value + 1 WHERE name = $1"
REF = uuid.UUID("6f1c9a4e-2b1d-4c55-9a7e-0d3f5b8e1a20")



async def committed(db: Database) -> dict[str, tuple[int, uuid.UUID | None]]:
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT name, value, ref FROM counters"))).all()
    return {name: (value, ref) for name, value, ref in rows}



async def test_the_first_statement_goes_out_with_its_begin(
        db: Database, one: Database, pg_server: PgServer) -> None:
    name = db.engine.url.database
    assert name is not None
    with pg_server.statements_logged(name) as logged:
        pid = await backend_pid(one)  # the engine's first connection asks its own questions
        sent_before = len(logged(pid))
        async with one.unit_of_work() as uow:
            assert await driver_execute_first(uow.session, INSERT, "a", 1, REF) == 1
            assert await driver_execute(uow.session, BUMP, "a") == 1
            await uow.commit()
        async with one.unit_of_work() as uow:  # a repeat: ON CONFLICT, no row
            assert await driver_execute_first(uow.session, INSERT, "a", 5, REF) == 0
            await uow.commit()
        sent = [s.split(": ", 1)[1] for s in logged(pid)[sent_before:]]
    assert await committed(db) == {"a": (2, REF)}
    first = f"BEGIN; INSERT INTO counters (name, value, ref) VALUES ('a', 1, '{REF}') " \
            "ON CONFLICT DO NOTHING"
    # Two round trips fewer than BEGIN, INSERT, …: no BEGIN of its own in either transaction.
    assert sent == [first, BUMP, "COMMIT", first.replace("1, '", "5, '"), "COMMIT"], sent


async def test_leaving_without_commit_writes_nothing_and_the_connection_is_clean(
        db: Database, one: Database) -> None:
    async with one.unit_of_work() as uow:
        assert await driver_execute_first(uow.session, INSERT, "gone", 1, REF) == 1
    assert await committed(db) == {}
    async with one.unit_of_work() as uow:  # the same connection, at rest again
        assert await driver_execute_first(uow.session, INSERT, "kept", 1, None) == 1
        await uow.commit()
    assert await committed(db) == {"kept": (1, None)}


async def test_a_failing_first_statement_fails_as_sqlalchemy_would_and_writes_nothing(
        db: Database, one: Database) -> None:
    async with one.unit_of_work() as uow:
        await driver_execute_first(uow.session, INSERT, "taken", 1, REF)
        await uow.commit()
    duplicate = "INSERT INTO counters (name, value) VALUES ($1, $2)"
    with pytest.raises(IntegrityError):
        async with one.unit_of_work() as uow:
            await driver_execute_first(uow.session, duplicate, "taken", 2)
            await uow.commit()
    # The aborted transaction was rolled back: the connection takes the next one.
    async with one.unit_of_work() as uow:
        assert await driver_execute_first(uow.session, INSERT, "next", 3, None) == 1
        await uow.commit()
    assert await committed(db) == {"taken": (1, REF), "next": (3, None)}


@pytest.mark.parametrize("value", [
    "it's", "back\\slash", "x'); DROP TABLE counters; --", "$1 $2", "ünïcödé ✓", ""])
async def test_values_arrive_exactly_as_given(db: Database, one: Database, value: str) -> None:
    async with one.unit_of_work() as uow:
        assert await driver_execute_first(uow.session, INSERT, value, 7, REF) == 1
        await uow.commit()
    assert await committed(db) == {value: (7, REF)}


async def test_otherwise_the_transaction_begins_the_usual_way(
        db: Database, one: Database, pg_server: PgServer) -> None:
    name = db.engine.url.database
    assert name is not None
    at = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
    with pg_server.statements_logged(name) as logged:
        pid = await backend_pid(one)
        sent_before = len(logged(pid))
        async with one.unit_of_work() as uow:  # a value without a literal form here
            assert await driver_execute_first(
                uow.session, "INSERT INTO counters (name, value, at) VALUES ($1, $2, $3)",
                "dated", 1, at) == 1
            # Not the first statement any more: sent as a statement of the transaction.
            assert await driver_execute_first(uow.session, INSERT, "second", 2, REF) == 1
            await uow.commit()
        sent = [s.split(": ", 1)[1] for s in logged(pid)[sent_before:]]
    assert await committed(db) == {"dated": (1, None), "second": (2, REF)}
    begins = [s for s in sent if s.startswith("BEGIN")]
    assert begins and all(s.rstrip(";") == "BEGIN" or s.startswith("BEGIN ISOLATION")
                          for s in begins), sent
    assert not any(s.startswith("BEGIN") and "INSERT" in s for s in sent), sent


async def test_a_connection_lost_under_the_first_statement_is_replaced(
        db: Database, one: Database) -> None:
    pid = await backend_pid(one)
    await db.execute_once("SELECT pg_terminate_backend($1)", pid)
    with pytest.raises(DBAPIError) as lost:
        async with one.unit_of_work() as uow:
            await driver_execute_first(uow.session, INSERT, "lost", 1, REF)
    assert lost.value.connection_invalidated  # chassis.errors answers it with a 503
    async with one.unit_of_work() as uow:
        assert await driver_execute_first(uow.session, INSERT, "after", 1, REF) == 1
        await uow.commit()
    assert await backend_pid(one) != pid
    assert await committed(db) == {"after": (1, REF)}


async def test_reads_alone_send_no_begin_and_no_rollback(
        db: Database, one: Database, pg_server: PgServer) -> None:
    async with db.unit_of_work() as uow:  # not on `one`: its connection opens logged below
        await driver_execute_first(uow.session, INSERT, "a", 1, REF)
        await uow.commit()
    name = db.engine.url.database
    assert name is not None
    read = "SELECT value FROM counters WHERE name = $1"
    with pg_server.statements_logged(name) as logged:
        pid = await backend_pid(one)
        sent_before = len(logged(pid))
        async with one.unit_of_work().reading() as uow:
            assert [r["value"] for r in await driver_fetch(uow.session, read, "a")] == [1]
            assert await driver_fetch(uow.session, read, "none") == []
        async with one.unit_of_work() as uow:  # the connection is at rest: a usual transaction
            assert await driver_execute(uow.session, BUMP, "a") == 1
            await uow.commit()
        sent = [s.split(": ", 1)[1] for s in logged(pid)[sent_before:]]
    assert sent[:2] == [read, read], sent  # two round trips, not four
    assert sent[2].startswith("BEGIN") and sent[3:] == [BUMP, "COMMIT;"], sent
    assert await committed(db) == {"a": (2, REF)}


async def test_reading_refuses_writes_on_the_driver(db: Database, one: Database) -> None:
    with pytest.raises(RuntimeError, match="reading"):
        async with one.unit_of_work().reading() as uow:
            await driver_execute(uow.session, INSERT, "no", 1, REF)
    with pytest.raises(RuntimeError, match="reading"):
        async with one.unit_of_work().reading() as uow:
            await driver_execute_first(uow.session, INSERT, "no", 1, REF)
    assert await committed(db) == {}


async def test_a_statement_through_sqlalchemy_while_reading_is_rolled_back_at_the_end(
        db: Database, one: Database) -> None:
    async with one.unit_of_work().reading() as uow:
        await uow.session.execute(text(
            "INSERT INTO counters (name, value) VALUES ('begun', 1)"))  # begins as usual
        rows = await driver_fetch(uow.session, "SELECT name FROM counters")
        assert [r["name"] for r in rows] == ["begun"]  # inside that transaction
    assert await committed(db) == {}
    async with one.unit_of_work() as uow:
        assert await driver_execute_first(uow.session, INSERT, "after", 1, None) == 1
        await uow.commit()
    assert await committed(db) == {"after": (1, None)}


async def test_a_readiness_ping_right_after_an_answer_sends_nothing(
        db: Database, one: Database, pg_server: PgServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import chassis.db as chassis_db

    name = db.engine.url.database
    assert name is not None
    with pg_server.statements_logged(name) as logged:
        pid = await backend_pid(one)  # answered a moment ago
        sent_before = len(logged(pid))
        await one.ping()
        async with one.unit_of_work() as uow:  # a commit answers too
            await driver_execute_first(uow.session, INSERT, "a", 1, REF)
            await uow.commit()
        await one.ping()
        monkeypatch.setattr(chassis_db, "ANSWER_COUNTS_FOR_S", 0.0)  # every answer too old
        await one.ping()
        sent = [s.split(": ", 1)[1] for s in logged(pid)[sent_before:]]
    assert sent[-1] == "SELECT 1" and sent.count("SELECT 1") == 1, sent


# -- a repository's writes at commit (chassis.db.inserting, last_per_key, flush_pending) --------
_ADDED, _SET = "test.counter_added", "test.counter_set"
register_deferred(_ADDED, inserting("counters", ("name", "value", "ref")))
register_deferred(_SET, lambda rows: (
    "UPDATE counters SET value = x.value FROM unnest($1::text[], $2::int[]) AS x(name, value) "
    "WHERE counters.name = x.name", as_columns(last_per_key(rows))))


async def test_rows_written_at_commit_are_one_statement_and_a_read_sees_them_first(
        db: Database, one: Database, pg_server: PgServer) -> None:
    name = db.engine.url.database
    assert name is not None
    with pg_server.statements_logged(name) as logged:
        pid = await backend_pid(one)
        sent_before = len(logged(pid))
        async with one.unit_of_work() as uow:
            await write_at_commit(uow.session, _ADDED, ("a", 1, REF))
            await write_at_commit(uow.session, _ADDED, ("b", 1, None))
            await flush_pending(uow.session, ("test.other",))  # not waiting: nothing sent
            await write_at_commit(uow.session, _SET, ("a", 5))  # another row than its insert
            await uow.commit()
        async with one.unit_of_work() as uow:
            await write_at_commit(uow.session, _SET, ("a", 6))
            await write_at_commit(uow.session, _SET, ("a", 7))  # the last one counts
            await flush_pending(uow.session, (_SET,))
            [row] = await driver_fetch(uow.session, "SELECT value FROM counters WHERE name = $1",
                                       "a")
            assert row["value"] == 7  # the read saw the write it came after
            await uow.commit()
        sent = [" ".join(s.split(": ", 1)[1].split()) for s in logged(pid)[sent_before:]]
    # Less asyncpg's questions about the array types it meets first.
    sent = [s for s in sent if "typeinfo" not in s and "'jit'" not in s]
    assert await committed(db) == {"a": (7, REF), "b": (1, None)}
    writes = [s for s in sent if "counters" in s and not s.startswith("SELECT")]
    # The first: one write alone, no BEGIN, no COMMIT (ADR 0055); the second: BEGIN, the
    # flush, the read, COMMIT.
    assert len(writes) == 2 and len(sent) == 5, sent
    assert sent[0] == writes[0] and sent[1] == "BEGIN;" and sent[-1] == "COMMIT;", sent
    assert writes[0].startswith("WITH w0 AS (INSERT INTO counters (name, value, ref) "
                                "VALUES ($1, $2, $3), ($4, $5, $6)), w1 AS (UPDATE"), writes


# -- a transaction that is one statement, sent alone (ADR 0055) ---------------------------------
_CHECKED = "test.counter_checked"
register_deferred(_CHECKED, lambda rows: (
    "UPDATE counters SET value = x.value FROM unnest($1::text[], $2::int[]) AS x(name, value) "
    "WHERE counters.name = x.name RETURNING counters.name", as_columns(rows)),
    verify=lambda rows, returned: None if returned == len(rows) else (_ for _ in ()).throw(
        RuntimeError(f"{len(rows) - returned} counters missing")))


async def _sent_by(one: Database, pg_server: PgServer, work: Any) -> list[str]:
    name = one.engine.url.database
    assert name is not None
    with pg_server.statements_logged(name) as logged:
        pid = await backend_pid(one)
        sent_before = len(logged(pid))
        await work()
        sent = [" ".join(s.split(": ", 1)[1].split()) for s in logged(pid)[sent_before:]]
    return [s for s in sent if "typeinfo" not in s and "'jit'" not in s]


async def test_a_failing_statement_sent_alone_writes_none_of_its_parts(
        db: Database, one: Database, pg_server: PgServer) -> None:
    async def work() -> None:
        async with one.unit_of_work() as uow:
            await write_at_commit(uow.session, _ADDED, ("a", 1, REF))
            await write_at_commit(uow.session, _SET, ("z", 2))
            await uow.commit()
        with pytest.raises(IntegrityError):  # "a" again: the insert fails, the update with it
            async with one.unit_of_work() as uow:
                await write_at_commit(uow.session, _ADDED, ("c", 1, None))
                await write_at_commit(uow.session, _ADDED, ("a", 1, None))
                await write_at_commit(uow.session, _SET, ("a", 9))
                await uow.commit()
        async with one.unit_of_work() as uow:  # the connection went back clean
            await write_at_commit(uow.session, _SET, ("a", 3))
            await uow.commit()

    sent = await _sent_by(one, pg_server, work)
    assert await committed(db) == {"a": (3, REF)}
    assert not [s for s in sent if s.startswith(("BEGIN", "COMMIT", "ROLLBACK"))], sent
    assert len(sent) == 3, sent


async def test_a_checked_write_or_one_after_a_statement_is_not_sent_alone(
        db: Database, one: Database, pg_server: PgServer) -> None:
    async def work() -> None:
        async with one.unit_of_work() as uow:
            await write_at_commit(uow.session, _ADDED, ("a", 1, REF))
            await uow.commit()
        # A verified kind is checked after its statement: inside a transaction, so that a
        # failed check still rolls the statement back.
        with pytest.raises(RuntimeError, match="1 counters missing"):
            async with one.unit_of_work() as uow:
                await write_at_commit(uow.session, _ADDED, ("b", 1, None))
                await write_at_commit(uow.session, _CHECKED, ("nobody", 5))
                await uow.commit()
        async with one.unit_of_work() as uow:  # a statement first: the usual transaction
            await driver_execute(uow.session, BUMP, "a")
            await write_at_commit(uow.session, _ADDED, ("c", 1, None))
            await uow.commit()

    sent = await _sent_by(one, pg_server, work)
    assert await committed(db) == {"a": (2, REF), "c": (1, None)}
    assert [s.split()[0] for s in sent] == [
        "INSERT", "BEGIN;", "WITH", "ROLLBACK;", "BEGIN;", "UPDATE", "INSERT", "COMMIT;"], sent


# -- an advisory lock taken with the first statement (ADR 0055) ---------------------------------
async def _lock_is_free(db: Database, space: int, key: str) -> bool:
    async with db.engine.connect() as conn:
        free = (await conn.execute(text("SELECT pg_try_advisory_xact_lock(:s, hashtext(:k))"),
                                   {"s": space, "k": key})).scalar_one()
        await conn.rollback()
    return bool(free)


async def test_a_lock_goes_with_the_first_statement_and_is_not_taken_twice(
        db: Database, one: Database, pg_server: PgServer) -> None:
    key = "it's r-1"  # a quote: the key is a literal in the script

    async def work() -> None:
        async with one.unit_of_work() as uow:
            assert await driver_execute_first(uow.session, INSERT, "a", 1, REF,
                                              locks=((77, key),)) == 1
            assert not await _lock_is_free(db, 77, key)  # held, under exactly that key
            await advisory_xact_lock(uow.session, 77, key)  # held already: nothing sent
            await advisory_xact_lock(uow.session, 77, "r-2")  # another: one statement
            assert not await _lock_is_free(db, 77, "r-2")
            await uow.commit()
        assert await _lock_is_free(db, 77, key)  # let go at the end of the transaction
        async with one.unit_of_work() as uow:  # a new transaction holds nothing yet
            await advisory_xact_lock(uow.session, 77, key)
            await uow.commit()

    sent = await _sent_by(one, pg_server, work)
    assert sent[0] == ("BEGIN; SELECT pg_advisory_xact_lock(77, hashtext('it''s r-1')); "
                       "INSERT INTO counters (name, value, ref) VALUES ('a', 1, "
                       f"'{REF}') ON CONFLICT DO NOTHING"), sent
    locks = [s for s in sent if "pg_advisory_xact_lock" in s]
    assert len(locks) == 3 and len(sent) == 6, sent  # the script, r-2, COMMIT; BEGIN, lock, COMMIT
    assert await committed(db) == {"a": (1, REF)}


async def test_a_lock_with_a_statement_that_cannot_go_with_its_begin_is_still_taken(
        db: Database, one: Database) -> None:
    async with one.unit_of_work() as uow:
        await driver_execute(uow.session, BUMP, "nobody")  # begun: the script's way is shut
        await driver_execute_first(uow.session, INSERT, "b", 2, None, locks=((78, "r-3"),))
        assert not await _lock_is_free(db, 78, "r-3")
        await uow.commit()
    assert await committed(db) == {"b": (2, None)}
