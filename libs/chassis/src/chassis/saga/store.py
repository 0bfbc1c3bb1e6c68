"""Reading and writing saga rows inside the caller's transaction (plain SQL, no ORM state)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text

from chassis.db import (
    Database,
    Tx,
    driver_fetch,
    flush_deferred,
    pending,
    register_deferred,
    write_at_commit,
)


class Status:
    RUNNING = "RUNNING"
    # Kept in the schema for a saga that awaits its compensations' replies; this engine
    # sends compensations fire-and-forget (see engine.py), so it never stays here.
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"
    FAILED = "FAILED"


class ConcurrentSagaUpdate(RuntimeError):
    """The row changed under us: the transaction must roll back and the message retry."""


@dataclass
class SagaInstance:
    id: uuid.UUID
    saga_name: str
    status: str
    current_step: int
    resends: int
    data: dict[str, Any]
    trace_context: dict[str, str]
    deadline_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int


_COLUMNS = ("id, saga_name, status, current_step, resends, data, trace_context, deadline_at, "
            "created_at, updated_at, version")
# A new saga is written at commit with its history and its first command, in the commit's one
# statement (chassis.db.write_at_commit, ADR 0049): the order's placement sent it alone before.
_INSERT_KIND = "saga_started"
_INSERT_MANY = (
    f"INSERT INTO saga_instances ({_COLUMNS}) "  # noqa: S608 (constant columns)
    "SELECT id, name, status, step, resends, data::jsonb, trace::jsonb, deadline, created, "
    "updated, version FROM unnest(CAST($1 AS uuid[]), CAST($2 AS text[]), CAST($3 AS text[]), "
    "CAST($4 AS integer[]), CAST($5 AS integer[]), CAST($6 AS text[]), CAST($7 AS text[]), "
    "CAST($8 AS timestamptz[]), CAST($9 AS timestamptz[]), CAST($10 AS timestamptz[]), "
    "CAST($11 AS integer[])) WITH ORDINALITY "
    "AS x(id, name, status, step, resends, data, trace, deadline, created, updated, version, n) "
    "ORDER BY n")
# _COLUMNS is a constant: nothing from outside reaches these strings.
_LOAD = text(f"SELECT {_COLUMNS} FROM saga_instances WHERE id = :id")  # noqa: S608
# A reply's load and save run on asyncpg directly (chassis.db.driver_fetch, ADR 0045): every
# saga step's reply runs both, always in a consumer's transaction.
_LOAD_LOCKED = f"SELECT {_COLUMNS} FROM saga_instances WHERE id = $1 FOR UPDATE"  # noqa: S608
# SKIP LOCKED: several reconcilers (and reply handlers holding a row) never wait on each
# other, and a row is driven by at most one of them at a time.
_CLAIM_OVERDUE = text(
    f"SELECT {_COLUMNS} FROM saga_instances WHERE status = 'RUNNING' "  # noqa: S608
    "AND deadline_at <= :now AND saga_name = ANY(:names) "
    "ORDER BY deadline_at LIMIT :limit FOR UPDATE SKIP LOCKED")
# A reply's new state is written at commit with its history and its outbox rows, in one
# statement (chassis.db.write_at_commit, ADR 0048); the version check is its answer.
_SAVE_KIND = "saga_instances"
_SAVE_MANY = (
    "UPDATE saga_instances AS s SET status = x.status, current_step = x.step, "
    "resends = x.resends, data = x.data::jsonb, deadline_at = x.deadline, updated_at = x.at, "
    "version = s.version + 1 "
    "FROM unnest(CAST($1 AS uuid[]), CAST($2 AS integer[]), CAST($3 AS text[]), "
    "CAST($4 AS integer[]), CAST($5 AS integer[]), CAST($6 AS text[]), "
    "CAST($7 AS timestamptz[]), CAST($8 AS timestamptz[])) "
    "AS x(id, version, status, step, resends, data, deadline, at) "
    "WHERE s.id = x.id AND s.version = x.version RETURNING s.id")
# History rows are written together at commit (chassis.db.write_at_commit), in order.
_RECORD_MANY = (
    "INSERT INTO saga_events (saga_id, at, kind, step, message_type, detail) "
    "SELECT s, a, k, st, mt, d FROM unnest(CAST($1 AS uuid[]), "
    "CAST($2 AS timestamptz[]), CAST($3 AS text[]), CAST($4 AS text[]), "
    "CAST($5 AS text[]), CAST($6 AS jsonb[])) "
    "WITH ORDINALITY AS x(s, a, k, st, mt, d, n) ORDER BY n")
# Served by the partial index of running sagas (ix_saga_instances_deadline).
_COUNT_RUNNING_SQL = ("SELECT count(*) FROM saga_instances WHERE status = 'RUNNING' "
                      "AND saga_name = ANY($1)")
_COUNT_RUNNING = text(_COUNT_RUNNING_SQL.replace("$1", ":names"))
_EVENTS_KIND = "saga_events"
_EVENTS = text("SELECT id, at, kind, step, message_type, detail FROM saga_events "
               "WHERE saga_id = :id ORDER BY id")


def _by_column(sql: str) -> Callable[[list[tuple[Any, ...]]], tuple[str, tuple[list[Any], ...]]]:
    """A flusher for ``sql``, whose ``$n`` is the array of the rows' n-th values."""
    def flusher(rows: list[tuple[Any, ...]]) -> tuple[str, tuple[list[Any], ...]]:
        return sql, tuple(list(column) for column in zip(*rows, strict=True))

    return flusher


def _all_saved(rows: list[tuple[Any, ...]], returned: int) -> None:
    if returned != len(rows):
        ids = ", ".join(f"{r[0]} (v{r[1]})" for r in rows)
        raise ConcurrentSagaUpdate(f"saga {ids} changed concurrently")


register_deferred(_EVENTS_KIND, _by_column(_RECORD_MANY))
register_deferred(_SAVE_KIND, _by_column(_SAVE_MANY), verify=_all_saved)
register_deferred(_INSERT_KIND, _by_column(_INSERT_MANY))


def _row_pending(session: Tx, saga_id: uuid.UUID) -> bool:
    """A write of this saga waits for the commit (its insert or a save): a statement that
    reads or updates its row must see it written first."""
    return any(row[0] == saga_id for kind in (_INSERT_KIND, _SAVE_KIND)
               for row in pending(session, kind))


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _loads(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _instance(row: Any) -> SagaInstance:
    m = getattr(row, "_mapping", row)  # a SQLAlchemy Row, or an asyncpg Record
    return SagaInstance(
        id=m["id"], saga_name=m["saga_name"], status=m["status"],
        current_step=m["current_step"], resends=m["resends"], data=_loads(m["data"]),
        trace_context=_loads(m["trace_context"]), deadline_at=m["deadline_at"],
        created_at=m["created_at"], updated_at=m["updated_at"], version=m["version"])


async def insert(session: Tx, inst: SagaInstance) -> None:
    """Write the new saga at commit (a duplicate id fails the commit)."""
    await write_at_commit(session, _INSERT_KIND, (
        inst.id, inst.saga_name, inst.status, inst.current_step, inst.resends,
        _dumps(inst.data), _dumps(inst.trace_context), inst.deadline_at, inst.created_at,
        inst.updated_at, inst.version))


async def load(session: Tx, saga_id: uuid.UUID, *,
               lock: bool = False) -> SagaInstance | None:
    """The saga; locked until the transaction ends with ``lock`` (a consumer's reply only)."""
    if _row_pending(session, saga_id):
        await flush_deferred(session)  # its state as this transaction left it
    if lock:
        rows = await driver_fetch(session, _LOAD_LOCKED, saga_id)
        return _instance(rows[0]) if rows else None
    row = (await session.execute(_LOAD, {"id": saga_id})).first()
    return _instance(row) if row is not None else None


async def claim_overdue(session: Tx, now: datetime, names: list[str],
                        limit: int) -> list[SagaInstance]:
    rows = await session.execute(_CLAIM_OVERDUE, {"now": now, "names": names, "limit": limit})
    return [_instance(r) for r in rows]


async def save(session: Tx, inst: SagaInstance, now: datetime) -> None:
    """Write the new state, at the latest at commit; the version check backs up the row
    lock (a caller that forgot FOR UPDATE fails loudly instead of losing an update), with
    ``ConcurrentSagaUpdate`` from the statement that writes it. Called by a consumer's reply
    and the reconciler's tick only (ADR 0045: errors are asyncpg's)."""
    if _row_pending(session, inst.id):
        await flush_deferred(session)  # one row per saga in the statement, in order
    await write_at_commit(session, _SAVE_KIND, (
        inst.id, inst.version, inst.status, inst.current_step, inst.resends,
        _dumps(inst.data), inst.deadline_at, now))
    inst.version += 1
    inst.updated_at = now


async def record(session: Tx, saga_id: uuid.UUID, at: datetime, kind: str, *,
                 step: str | None = None, message_type: str | None = None,
                 detail: dict[str, Any] | None = None) -> None:
    await write_at_commit(session, _EVENTS_KIND,
                          (saga_id, at, kind, step, message_type, _dumps(detail or {})))


async def count_running(session: Tx, names: list[str]) -> int:
    return int((await session.execute(_COUNT_RUNNING, {"names": names})).scalar_one())


async def count_running_now(db: Database, names: list[str]) -> int:
    """``count_running`` as a statement of its own (no transaction around it): the orders
    service's admission control asks it twice a second."""
    return int((await db.fetch_once(_COUNT_RUNNING_SQL, names))[0][0])


async def events(session: Tx, saga_id: uuid.UUID) -> list[dict[str, Any]]:
    await flush_deferred(session)  # this transaction's own rows too
    rows = await session.execute(_EVENTS, {"id": saga_id})
    return [{**r._mapping, "detail": _loads(r._mapping["detail"])} for r in rows]
