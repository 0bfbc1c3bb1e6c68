"""SQLAlchemy 2 async engine (asyncpg) and the unit of work every handler runs in.

A unit of work is one transaction: handlers change state (and stage outbox messages)
through its ``session`` and call ``commit``; leaving the block without committing rolls back,
so a failed request writes nothing.

The ``session`` is an ``AsyncConnection``, not an ORM ``AsyncSession`` (ADR 0044): the
services write Core statements only, and the ORM session's bookkeeping cost ~180 µs of
client CPU per transaction for nothing. It answers the same calls the handlers make
(``execute``, ``scalar``, ``scalars``, ``begin_nested``). A service that maps rows to classes
(identity) takes ``await uow.orm()``: an ORM session on the same connection and
transaction.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.util import greenlet_spawn

# What a unit of work hands its handlers (``uow.session``); an ``AsyncSession`` still works
# with every function here (``Database.sessions``, tests).
Tx = AsyncConnection | AsyncSession

# The state of a connection's transaction (rows written at commit, callbacks after it), kept
# beside the sync Connection of one checkout: ``Connection.info`` would outlive it in the pool.
_CONNECTION_STATE: weakref.WeakKeyDictionary[Connection, dict[str, Any]] = (
    weakref.WeakKeyDictionary())


def _sync_connection(conn: AsyncConnection) -> Connection:
    sync = conn.sync_connection
    if sync is None:
        raise RuntimeError("the connection is not open: use it inside 'async with uow:'")
    return sync


def _state(tx: Tx) -> dict[str, Any]:
    if isinstance(tx, AsyncSession):
        return tx.sync_session.info
    return _CONNECTION_STATE.setdefault(_sync_connection(tx), {})


def _is_reading(tx: Tx) -> bool:
    """Opened by ``UnitOfWork.reading()`` (read without making the state dict)."""
    if isinstance(tx, AsyncSession):
        return bool(tx.sync_session.info.get(_READING))
    state = _CONNECTION_STATE.get(_sync_connection(tx))
    return state is not None and bool(state.get(_READING))


def engine_of(tx: Tx) -> Engine | None:
    """The (sync) engine ``tx`` runs on; None for a session bound to anything else."""
    if isinstance(tx, AsyncSession):
        bind = tx.sync_session.bind
        return bind if isinstance(bind, Engine) else None
    return tx.sync_engine


# -- statements past SQLAlchemy's execution path -------------------------------------------
# The chassis's own statements on every message's path (the inbox claim, a reply's saga load
# and save, the rows written at commit) run on the transaction's asyncpg connection
# directly: SQLAlchemy's Core execution (execution context, the asyncpg adapter, a greenlet
# switch) cost ~0.1-0.2 ms of client CPU per statement against ~0.03 ms on asyncpg alone
# (ADR 0045). They run in the same transaction: the adapter's transaction is begun first if
# nothing has run yet. Their errors are SQLAlchemy's, as if it had run them (an
# IntegrityError, an OperationalError …), so ``chassis.errors`` still answers a 409 or a 503.


async def _adapted(tx: Tx) -> Any:
    """SQLAlchemy's AsyncAdapt_asyncpg_connection under ``tx`` (pinned 2.0.x, ADR 0002): its
    asyncpg connection, its lazily begun transaction and the lock that orders statements."""
    if isinstance(tx, AsyncSession):
        conn = await tx.connection()
    else:
        conn = tx
        adapted = _checked_out(conn)
        if adapted is not None:
            sync = _sync_connection(conn)
            if not sync.in_transaction():
                # No I/O: asyncpg's adapter begins lazily, at the first statement, so
                # SQLAlchemy's begin is bookkeeping and needs no greenlet (ADR 0047).
                sync.begin()
            return adapted
        if not conn.in_transaction():
            await conn.begin()  # so that the unit of work's commit or rollback ends it
    return (await conn.get_raw_connection()).dbapi_connection


def _checked_out(conn: AsyncConnection) -> Any | None:
    """The adapter of a checked-out, valid connection, read without a greenlet switch
    (``get_raw_connection`` takes one); None when SQLAlchemy must revalidate it first."""
    sync = conn.sync_connection
    if sync is None or sync.invalidated:
        return None
    fairy = sync._dbapi_connection
    return None if fairy is None else fairy.dbapi_connection


def _as_sqlalchemy_error(adapted: Any, sql: str, args: tuple[Any, ...],
                        error: Exception) -> Exception:
    """``error`` as SQLAlchemy would have raised it: asyncpg's, translated by the adapter
    into its DBAPI error, wrapped in the matching ``sqlalchemy.exc.DBAPIError``."""
    try:
        adapted._handle_exception(error)  # raises the adapter's translation
    except Exception as translated:
        error = translated
    base = adapted.dbapi.Error
    if isinstance(error, base):
        return DBAPIError.instance(sql, args, error, base,
                                   connection_invalidated=adapted._connection.is_closed())
    return error


def violated_constraint(error: BaseException) -> str | None:
    """The name of the constraint an integrity error broke (asyncpg's, under SQLAlchemy's
    and its adapter's wrappers), or None: how a caller tells "this key exists" from any
    other conflict."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = getattr(current, "constraint_name", None)
        if isinstance(name, str) and name:
            return name
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return None


async def _invalidate_if_lost(tx: Tx, adapted: Any, error: Exception) -> None:
    """A lost connection (PostgreSQL restarted, the backend killed) is dropped, as
    SQLAlchemy's own path does: this one is never checked out again, and the pool's older
    connections are replaced at their next checkout, since they went with it."""
    if not adapted._connection.is_closed():
        return
    conn = await tx.connection() if isinstance(tx, AsyncSession) else tx
    sync = conn.sync_connection
    if sync is None or sync.invalidated or sync._dbapi_connection is None:
        return
    fairy = sync._dbapi_connection

    def invalidate() -> None:  # what Connection._handle_dbapi_exception does on a disconnect
        sync.engine.pool._invalidate(fairy, error)
        sync.invalidate(error)

    with contextlib.suppress(Exception):
        await greenlet_spawn(invalidate)


async def _on_driver(tx: Tx, sql: str, args: tuple[Any, ...],
                     run: Callable[[Any], Awaitable[Any]]) -> Any:
    adapted = await _adapted(tx)
    try:
        async with adapted._execute_mutex:
            # BEGIN, as SQLAlchemy's first statement would send it; none for reads alone.
            if not adapted._started and not _is_reading(tx):
                await adapted._start_transaction()
            return await run(adapted._connection)
    except Exception as error:
        translated = _as_sqlalchemy_error(adapted, sql, args, error)
        await _invalidate_if_lost(tx, adapted, error)
        raise translated from error


async def driver_fetch(tx: Tx, sql: str, *args: Any) -> list[Any]:
    """Rows (asyncpg ``Record``s) of ``sql`` (``$n`` parameters), in ``tx``'s transaction."""
    return list(await _on_driver(tx, sql, args, lambda conn: conn.fetch(sql, *args)))


async def driver_execute(tx: Tx, sql: str, *args: Any) -> int:
    """Run ``sql`` in ``tx``'s transaction; the number of rows it changed."""
    if _is_reading(tx):
        raise RuntimeError("a unit of work opened for reading (uow.reading()) writes nothing")
    status: str = await _on_driver(tx, sql, args, lambda conn: conn.execute(sql, *args))
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


# -- BEGIN in the first statement's round trip ---------------------------------------------
# A transaction's BEGIN is a round trip of its own (SQLAlchemy's adapter sends it before the
# first statement), ~80 µs of client and server CPU per transaction (ADR 0049). asyncpg sends a
# statement without parameters as a simple query, which may hold several statements, so a
# transaction whose first statement has only plain values (text, uuid, int) sends it with its
# BEGIN: ``BEGIN; <statement, values as literals>``. Only its status comes back (its row
# count), so it suits a statement whose row count is its answer: the inbox's claim. Anything
# else (a transaction already begun, values of other types, a server that does not take
# standard-conforming strings) goes the usual way, BEGIN first.

_ISOLATION = {"read_committed": " ISOLATION LEVEL READ COMMITTED",
              "read_uncommitted": " ISOLATION LEVEL READ UNCOMMITTED",
              "repeatable_read": " ISOLATION LEVEL REPEATABLE READ",
              "serializable": " ISOLATION LEVEL SERIALIZABLE"}


class _BegunInScript:
    """The transaction a ``BEGIN; …`` script opened: what SQLAlchemy's asyncpg adapter asks
    of asyncpg's ``Transaction`` to end one."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def commit(self) -> None:
        await self._conn.execute("COMMIT")

    async def rollback(self) -> None:
        # After a script that failed at BEGIN there is no transaction: PostgreSQL answers
        # ROLLBACK with a warning, not an error.
        await self._conn.execute("ROLLBACK")


def _literal(value: Any) -> str | None:
    """``value`` as a PostgreSQL literal under standard-conforming strings, or None."""
    if isinstance(value, uuid.UUID):
        return f"'{value}'"
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and "\x00" not in value:
        return "'" + value.replace("'", "''") + "'"
    return None


def _begin(adapted: Any) -> str | None:
    """The BEGIN asyncpg would send for the adapter's transaction; None when it sends none."""
    level = adapted.isolation_level
    if level == "autocommit" or (level is not None and level not in _ISOLATION):
        return None
    return ("BEGIN" + _ISOLATION.get(level or "", "") + (" READ ONLY" if adapted.readonly else "")
            + (" DEFERRABLE" if adapted.deferrable else ""))


async def driver_execute_first(tx: Tx, sql: str, *args: Any,
                               locks: Sequence[tuple[int, str]] = ()) -> int:
    """``driver_execute``, with the transaction's BEGIN in the same round trip when ``sql``
    is its first statement and every value has a literal form; the number of rows changed.

    ``locks`` (``advisory_xact_lock``'s) are taken before ``sql``, in the same round trip
    when it goes with its BEGIN (ADR 0055)."""
    adapted = await _adapted(tx)
    values = [_literal(a) for a in args]
    keys = [(int(space), _literal(key)) for space, key in locks]
    quoted = getattr(adapted._connection.get_settings(), "standard_conforming_strings", "")
    begin = None if adapted._started or None in values or _is_reading(tx) or quoted != "on" \
        or any(key is None for _, key in keys) else _begin(adapted)
    if begin is None:
        for space, key in locks:
            await advisory_xact_lock(tx, space, key)
        return await driver_execute(tx, sql, *args)
    # Each statement of a script takes a snapshot of its own: ``sql`` sees what the holder of
    # a lock committed before it let go.
    begin += "".join(f"; SELECT pg_advisory_xact_lock({space}, hashtext({key}))"
                     for space, key in keys)
    if locks:
        _state(tx).setdefault(_LOCKS, set()).update(locks)
    script = _PARAMETER.sub(lambda m: values[int(m.group(1)) - 1] or "", sql)
    try:
        async with adapted._execute_mutex:
            # Begun before it is sent: whatever the script did, the unit of work's end sends
            # COMMIT or ROLLBACK.
            adapted._transaction = _BegunInScript(adapted._connection)
            adapted._started = True
            status: str = await adapted._connection.execute(f"{begin}; {script}")
    except Exception as error:
        translated = _as_sqlalchemy_error(adapted, sql, args, error)
        await _invalidate_if_lost(tx, adapted, error)
        raise translated from error
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


# -- advisory locks, taken once per transaction ---------------------------------------------
# A handler serialises the messages about one thing (a reservation, a payment, a shipment)
# with a transaction-scoped advisory lock. A consumer that knows the lock a message's handler
# will take takes it with the inbox claim, in its round trip (``driver_execute_first``'s
# ``locks``); the handler's own ``advisory_xact_lock`` then sends nothing (ADR 0055).
_LOCKS = "chassis_advisory_locks"
_LOCK = "SELECT pg_advisory_xact_lock($1, hashtext($2))"


async def advisory_xact_lock(tx: Tx, space: int, key: str) -> None:
    """Hold the advisory lock (``space``, ``hashtext(key)``) until this transaction ends; no
    round trip when this transaction holds it already."""
    held: set[tuple[int, str]] = _state(tx).setdefault(_LOCKS, set())
    if (space, key) in held:
        return
    await driver_execute(tx, _LOCK, space, key)
    if not tx.in_nested_transaction():  # a savepoint's lock may go with its rollback
        held.add((space, key))


# Work that is ONE statement needs no transaction around it: PostgreSQL runs a statement sent
# outside a transaction block atomically, committing it when it ends, so BEGIN and COMMIT would
# be two more round trips (~35 µs of client CPU, ``mercato bench sqlalchemy``: once_touch)
# for nothing. ``Database.fetch_once`` runs it on the driver of a connection checked out of
# SQLAlchemy's pool (so its size, recycling and disposal still hold) without beginning the
# adapter's transaction: the pool's reset on return then has nothing to roll back (the
# adapter's rollback is a no-op when it began nothing), and the connection goes back at rest
# with no round trip.
async def _on_driver_once(conn: AsyncConnection, sql: str, args: tuple[Any, ...],
                          run: Callable[[Any], Awaitable[Any]]) -> Any:
    adapted: Any = _checked_out(conn)
    if adapted is None:  # SQLAlchemy revalidates it first
        adapted = (await conn.get_raw_connection()).dbapi_connection
    try:
        async with adapted._execute_mutex:
            return await run(adapted._connection)
    except Exception as error:
        translated = _as_sqlalchemy_error(adapted, sql, args, error)
        await _invalidate_if_lost(conn, adapted, error)
        raise translated from error


# -- rows written at commit -------------------------------------------------------------------
# Append-only rows that nothing reads back inside the transaction that writes them (outbox
# messages, saga history) are collected per transaction and written by one multi-row statement
# just before COMMIT: a saga reply that staged a command (an INSERT and a NOTIFY before) and
# recorded two history rows costs two statements instead of four. Same transaction, so they
# still commit or roll back with the state change. Inside a savepoint they are written at
# once, so rolling the savepoint back still undoes them.

# ``flusher(rows)`` returns one statement with ``$n`` parameters (write casts as
# ``CAST($1 AS uuid[])``) and its arguments: run on asyncpg directly (ADR 0045), or, from an
# ORM session's commit, as the equivalent SQLAlchemy ``text``. A kind registered with
# ``verify`` returns rows (``RETURNING``); ``verify(rows, returned)`` raises if the number
# returned is not what the rows expected (a saga's version check).
#
# A transaction's kinds go out together at commit as ONE statement, each kind's statement a
# data-modifying CTE of it (ADR 0048): a saga reply writes its outbox rows, its history and
# its new state in one round trip instead of three. A kind's statement is written alone when
# it is itself a WITH query (PostgreSQL allows data-modifying WITH only at the top level).
# A verified kind's statement has a RETURNING clause; ``verify`` gets the rows it returned.
Flusher = Callable[[list[Any]], tuple[str, tuple[Any, ...]]]
Verify = Callable[[list[Any], int], None]
_FLUSHERS: dict[str, Flusher] = {}
_VERIFY: dict[str, Verify] = {}
_PENDING = "chassis_deferred_rows"
_PARAMETER = re.compile(r"\$(\d+)")
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)


def register_deferred(kind: str, flusher: Flusher, *, verify: Verify | None = None) -> None:
    """``flusher(rows)`` returns the one statement (and arguments) that writes ``rows``; its
    SQL holds no ``$`` but its parameters' (statements are combined by renumbering them)."""
    _FLUSHERS[kind] = flusher
    if verify is not None:
        _VERIFY[kind] = verify


def inserting(table: str, columns: tuple[str, ...]) -> Flusher:
    """A flusher for rows (tuples in ``columns``' order) of ``table``: one INSERT of them
    all (a VALUES list: a row's value may be an array, which unnest cannot take for rows of
    different lengths). ``table`` and ``columns`` are the caller's code, never input."""
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608
    width = len(columns)

    def flush(rows: list[Any]) -> tuple[str, tuple[Any, ...]]:
        values = ", ".join(
            "(" + ", ".join(f"${i * width + j}" for j in range(1, width + 1)) + ")"
            for i in range(len(rows)))
        return head + values, tuple(value for row in rows for value in row)

    return flush


def as_columns(rows: list[Any]) -> tuple[list[Any], ...]:
    """Rows (tuples of one shape) as one list per column: the arrays of an ``unnest(...)``
    statement's parameters."""
    return tuple(list(column) for column in zip(*rows, strict=True))


def last_per_key(rows: list[Any]) -> list[Any]:
    """One row per key (its first value), the last one written: an ``UPDATE … FROM`` list
    changes a row once, with whichever of its duplicates it meets first."""
    return list({row[0]: row for row in rows}.values())


@functools.cache
def _as_text(sql: str) -> TextClause:
    return text(re.sub(r"\$(\d+)", r":p\1", sql))


def _text_params(args: tuple[Any, ...]) -> dict[str, Any]:
    return {f"p{i}": value for i, value in enumerate(args, 1)}


@functools.cache
def _combined(statements: tuple[str, ...], counts: tuple[int, ...]) -> str:
    """One statement running ``statements`` (with ``counts`` parameters each) as CTEs,
    answering how many rows each one that has a RETURNING clause returned (so that every
    row's RETURNING expressions run, and the verified kinds get their count)."""
    def shifted(sql: str, by: int) -> str:
        return _PARAMETER.sub(lambda m: f"${int(m[1]) + by}", sql)

    offsets = [sum(counts[:i]) for i in range(len(counts))]
    parts = [f"w{i} AS ({shifted(sql, by)})"
             for i, (sql, by) in enumerate(zip(statements, offsets, strict=True))]
    # The names are w0, w1 …: nothing from outside reaches this text.
    answers = [f"(SELECT count(*) FROM w{i})" for i, sql in enumerate(statements)  # noqa: S608
               if _RETURNING.search(sql)] or ["0"]
    return f"WITH {', '.join(parts)} SELECT {', '.join(answers)}"


async def _write_now(session: Tx, kind: str, rows: list[Any],
                     statement: tuple[str, tuple[Any, ...]] | None = None) -> None:
    """Write ``rows`` of ``kind`` now (``statement``: the flusher's, if already made)."""
    sql, args = statement or _FLUSHERS[kind](rows)
    if kind in _VERIFY:
        _VERIFY[kind](rows, len(await driver_fetch(session, sql, *args)))
    else:
        await driver_execute(session, sql, *args)


async def write_at_commit(session: Tx, kind: str, row: Any) -> None:
    """Write ``row`` (of a registered ``kind``) in this transaction, at the latest at commit."""
    if session.in_nested_transaction():
        await _write_now(session, kind, [row])
        return
    if not session.in_transaction():
        # Begin the transaction (no round trip yet), so that a rollback before anything
        # else ran still ends a transaction and drops these rows with it.
        if isinstance(session, AsyncSession):
            await session.connection()
        else:
            await session.begin()
    _state(session).setdefault(_PENDING, {}).setdefault(kind, []).append(row)


def pending(session: Tx, kind: str) -> list[Any]:
    """The rows of ``kind`` this transaction has not written yet (do not change the list)."""
    rows: list[Any] = _state(session).get(_PENDING, {}).get(kind, [])
    return rows


async def flush_pending(session: Tx, kinds: tuple[str, ...]) -> None:
    """Write what this transaction collected now if any of ``kinds`` waits (a repository's
    reads call it first: a later message of a consumer's batch, one transaction, then reads
    what an earlier one changed)."""
    state = _state(session).get(_PENDING)
    if state and any(state.get(kind) for kind in kinds):
        await flush_deferred(session)


def _write_pending(session: Session) -> None:
    pending: dict[str, list[Any]] | None = session.info.pop(_PENDING, None)
    for kind, rows in (pending or {}).items():
        sql, args = _FLUSHERS[kind](rows)
        # Runs inside the async session's greenlet: no await, so SQLAlchemy's own path.
        result = session.execute(_as_text(sql), _text_params(args))
        if kind in _VERIFY:
            _VERIFY[kind](rows, len(result.fetchall()))


# One kind's rows: (kind, rows, the kind's statement, its arguments).
_Part = tuple[str, list[Any], str, tuple[Any, ...]]


def _statements(pending: dict[str, list[Any]]) -> list[list[_Part]]:
    """The statements that write the pending rows, each as the kinds it writes: a kind that is
    itself a WITH query alone (data-modifying WITH is allowed only at the top level), every
    other kind together in one (ADR 0048)."""
    alone: list[list[_Part]] = []
    together: list[_Part] = []
    for kind, rows in pending.items():
        sql, args = _FLUSHERS[kind](rows)
        part = (kind, rows, sql, args)
        if sql.lstrip()[:4].upper() == "WITH":
            alone.append([part])
        else:
            together.append(part)
    return alone + ([together] if together else [])


def _sql_of(parts: list[_Part]) -> tuple[str, tuple[Any, ...]]:
    if len(parts) == 1:
        return parts[0][2], parts[0][3]
    return (_combined(tuple(sql for _, _, sql, _ in parts),
                      tuple(len(args) for _, _, _, args in parts)),
            tuple(value for _, _, _, args in parts for value in args))


async def _write_pending_alone(conn: AsyncConnection, adapted: Any) -> bool:
    """Write a transaction that sent nothing yet and whose work is one statement as that
    statement alone: PostgreSQL runs it atomically and commits it when it ends, so BEGIN
    and COMMIT would be two round trips for nothing (ADR 0055). False (nothing sent) when
    the transaction is not of that kind: it began, its isolation is not the default, a kind
    is verified (its check comes after the statement, too late for one already committed),
    or its rows take more than one statement."""
    state = _state(conn)
    pending: dict[str, list[Any]] | None = state.get(_PENDING)
    if not pending or adapted._started or _begin(adapted) != "BEGIN" \
            or any(kind in _VERIFY for kind in pending):
        return False
    statements = _statements(pending)
    if len(statements) != 1:
        return False
    sql, args = _sql_of(statements[0])
    del state[_PENDING]
    await _on_driver_once(conn, sql, args, lambda driver: driver.execute(sql, *args))
    return True


async def _write_pending_async(conn: AsyncConnection) -> None:
    pending: dict[str, list[Any]] | None = _state(conn).pop(_PENDING, None)
    for parts in _statements(pending or {}):
        if len(parts) == 1:
            kind, rows, sql, args = parts[0]
            await _write_now(conn, kind, rows, (sql, args))
            continue
        sql, args = _sql_of(parts)
        answers = iter((await driver_fetch(conn, sql, *args))[0])
        for kind, rows, statement, _ in parts:
            returned = next(answers) if _RETURNING.search(statement) else 0
            if kind in _VERIFY:
                _VERIFY[kind](rows, returned)


async def flush_deferred(session: Tx) -> None:
    """Write the collected rows now (before reading them back in the same transaction)."""
    if isinstance(session, AsyncSession):
        await session.run_sync(_write_pending)
    else:
        await _write_pending_async(session)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    _write_pending(session)


# -- work done once the transaction committed ------------------------------------------------
# Counting a saga finished (or anything else that must match what was stored) belongs after
# the commit: a consumer batch that rolls back and is handled again message by message would
# otherwise count twice. Each callback remembers the transaction (or savepoint) it was added
# in, so rolling a savepoint back drops only what was added inside it.
_AFTER_COMMIT = "chassis_after_commit"


def after_commit(session: Tx, callback: Callable[[], None]) -> None:
    """Call ``callback()`` once the session's outer transaction has committed; never if that
    transaction, or the savepoint it was added in, rolls back. Callbacks run in order; one
    that raises is skipped, the others still run."""
    sync: Session | Connection = (session.sync_session if isinstance(session, AsyncSession)
                                  else _sync_connection(session))
    scope = sync.get_nested_transaction() or sync.get_transaction()
    _state(session).setdefault(_AFTER_COMMIT, []).append((scope, callback))


def _run_after_commit(state: dict[str, Any]) -> None:
    for _, callback in state.pop(_AFTER_COMMIT, ()):
        with contextlib.suppress(Exception):
            callback()


def _inside(scope: Any, transaction: Any) -> bool:
    """Whether ``scope`` is ``transaction`` or a savepoint inside it: an ORM session's
    transactions chain by ``parent``, a connection's savepoints by ``_previous_nested``."""
    while scope is not None:
        if scope is transaction:
            return True
        scope = getattr(scope, "parent", None) or getattr(scope, "_previous_nested", None)
    return False


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: its callbacks wait for the outer commit
    _run_after_commit(session.info)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:  # the outer transaction: its rows are gone
        session.info.pop(_PENDING, None)
        session.info.pop(_LOCKS, None)
        session.info.pop(_AFTER_COMMIT, None)
        return
    waiting = session.info.get(_AFTER_COMMIT)
    if waiting:
        session.info[_AFTER_COMMIT] = [(scope, callback) for scope, callback in waiting
                                       if not _inside(scope, previous_transaction)]


@event.listens_for(Engine, "rollback_savepoint")
def _after_savepoint_rollback(conn: Connection, name: str, context: Any) -> None:
    """A connection's savepoint rolled back: the callbacks added inside it go with it."""
    state = _CONNECTION_STATE.get(conn)
    if state is None or not state.get(_AFTER_COMMIT):
        return
    waiting = state[_AFTER_COMMIT]
    rolled_back = conn.get_nested_transaction()
    while rolled_back is not None and getattr(rolled_back, "_savepoint", None) != name:
        rolled_back = rolled_back._previous_nested  # type: ignore[attr-defined]
    if rolled_back is not None:
        state[_AFTER_COMMIT] = [(scope, callback) for scope, callback in waiting
                                if not _inside(scope, rolled_back)]


# A statement this process had answered this recently stands for the readiness probe's own.
ANSWER_COUNTS_FOR_S = 1.0


class _Answered:
    """When the database last answered this process: a commit, or a statement alone."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = -math.inf

    def now(self) -> None:
        self.at = time.monotonic()


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, application_name: str = "mercato") -> None:
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=False,
            pool_recycle=1800,
            connect_args={"server_settings": {"application_name": application_name},
                          "timeout": 5, "command_timeout": 30},
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._answered = _Answered()

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.engine, self._answered)

    async def fetch_once(self, sql: str, *args: Any) -> list[Any]:
        """Rows (asyncpg ``Record``s) of ``sql`` (``$n`` parameters), run as its own
        transaction: ONE statement, no BEGIN or COMMIT sent. Errors are SQLAlchemy's, as in a
        unit of work. Work of more than one statement that must be atomic takes a unit of
        work."""
        async with self.engine.connect() as conn:
            rows = list(await _on_driver_once(conn, sql, args,
                                              lambda driver: driver.fetch(sql, *args)))
        self._answered.now()
        return rows

    async def execute_once(self, sql: str, *args: Any) -> int:
        """``fetch_once`` for a statement whose rows nobody reads: the number it changed."""
        async with self.engine.connect() as conn:
            status: str = await _on_driver_once(conn, sql, args,
                                                lambda driver: driver.execute(sql, *args))
        self._answered.now()
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def ping(self) -> None:
        """One round trip (no BEGIN, no ROLLBACK), unless the database answered this process
        within the last ``ANSWER_COUNTS_FOR_S``: every readiness probe (the edge's, every 2 s)
        and every scrape runs it, and under load a commit has just answered (ADR 0049)."""
        if time.monotonic() - self._answered.at < ANSWER_COUNTS_FOR_S:
            return
        await self.fetch_once("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()


def _at_rest(conn: AsyncConnection) -> bool:
    """No transaction open on the driver (or no driver to ask)."""
    adapted = _checked_out(conn)
    return adapted is None or not adapted._started


async def _commit_on_driver(conn: AsyncConnection, adapted: Any) -> None:
    """COMMIT on asyncpg, then end SQLAlchemy's transaction, which then has nothing left
    to send: no greenlet switch, as for the statements (ADR 0047)."""
    if adapted._started:
        try:
            await adapted._commit_and_discard()
        except Exception as error:
            translated = _as_sqlalchemy_error(adapted, "COMMIT", (), error)
            await _invalidate_if_lost(conn, adapted, error)
            raise translated from error
    _sync_connection(conn).commit()


# A unit of work opened by ``reading()``: its statements on the driver run alone.
_READING = "chassis_reading"


class UnitOfWork:
    def __init__(self, engine: AsyncEngine, answered: _Answered | None = None) -> None:
        self._engine = engine
        self._answered = answered
        self._conn: AsyncConnection | None = None
        self._orm: AsyncSession | None = None

    @property
    def session(self) -> AsyncConnection:
        if self._conn is None:
            raise RuntimeError("the unit of work is not open: use 'async with uow:'")
        return self._conn

    async def orm(self) -> AsyncSession:
        """An ORM session in this unit of work's transaction (for ``add``, ``get``)."""
        if self._orm is None:
            conn = self.session
            if not conn.in_transaction():
                await conn.begin()  # the session joins it and leaves its end to the uow
            self._orm = AsyncSession(bind=conn, expire_on_commit=False)
        return self._orm

    async def __aenter__(self) -> UnitOfWork:
        self._conn = await self._engine.connect()
        return self

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[UnitOfWork]:
        """This unit of work, for reads that take no locks: each statement on the driver runs
        alone, without the BEGIN before them and the ROLLBACK after (two round trips, ADR
        0049). Under READ COMMITTED each statement of a transaction takes a snapshot of its
        own anyway, so such reads see what they would have seen inside one. Writes on the
        driver are refused here; a statement through SQLAlchemy begins a transaction as
        usual, which the end of the block rolls back."""
        async with self:
            _state(self.session)[_READING] = True
            yield self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._conn is not None
        conn, orm, self._conn, self._orm = self._conn, self._orm, None, None
        try:
            if orm is not None:
                await orm.close()
            if conn.in_transaction() or not _at_rest(conn):
                await conn.rollback()  # undoes anything uncommitted
        finally:
            if conn.sync_connection is not None:
                _CONNECTION_STATE.pop(conn.sync_connection, None)
            await conn.close()

    async def commit(self) -> None:
        conn = self.session
        if self._orm is not None:
            await self._orm.flush()
        adapted = _checked_out(conn) if self._orm is None else None
        if adapted is not None and await _write_pending_alone(conn, adapted):
            _sync_connection(conn).commit()  # bookkeeping: the driver began nothing
        else:
            await _write_pending_async(conn)
            if adapted is None:
                await conn.commit()
            else:
                await _commit_on_driver(conn, adapted)
        if self._answered is not None:
            self._answered.now()
        _state(conn).pop(_LOCKS, None)
        _run_after_commit(_state(conn))

    async def rollback(self) -> None:
        conn = self.session
        await conn.rollback()
        if conn.sync_connection is not None:
            _CONNECTION_STATE.pop(conn.sync_connection, None)
