"""The orders' sagas, read straight from the orders database in read-only transactions
(the runtime's own connection as the orders role): the console needs no API of the service
and can change nothing there."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from mercato.runtime.paths import Home
from mercato.runtime.postgres import Postgres

STATES = ("RUNNING", "COMPENSATING", "COMPLETED", "COMPENSATED", "FAILED")

_LIST = """
SELECT id, saga_name, status, current_step, resends, deadline_at, created_at, updated_at,
       (status IN ('RUNNING', 'COMPENSATING') AND deadline_at < now()) AS stuck
FROM saga_instances
WHERE ($1::text IS NULL OR status = $1)
ORDER BY stuck DESC, (status IN ('RUNNING', 'COMPENSATING')) DESC, updated_at DESC
LIMIT $2
"""
_COUNTS = "SELECT status, count(*) FROM saga_instances GROUP BY status"
_ONE = """
SELECT id, saga_name, status, current_step, resends, deadline_at, created_at, updated_at,
       trace_context, (status IN ('RUNNING', 'COMPENSATING') AND deadline_at < now()) AS stuck
FROM saga_instances WHERE id = $1
"""
_EVENTS = ("SELECT id, at, kind, step, message_type, detail FROM saga_events "
           "WHERE saga_id = $1 ORDER BY at, id")


def _plain(row: asyncpg.Record) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dict(row).items():
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, uuid.UUID):
            value = str(value)
        out[key] = value
    return out


def trace_id_of(trace_context: dict[str, str] | None) -> str | None:
    parts = str((trace_context or {}).get("traceparent") or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


class Sagas:
    def __init__(self, home: Home) -> None:
        self.home = home
        self.pool: asyncpg.Pool | None = None

    async def _pool(self) -> asyncpg.Pool | None:
        if self.pool is None:
            url = Postgres(self.home, self.home.ports().postgres).service_database_url("orders")
            if url is None:
                return None
            self.pool = await asyncpg.create_pool(
                url.replace("postgresql+asyncpg://", "postgresql://", 1), min_size=0,
                max_size=2, server_settings={"default_transaction_read_only": "on",
                                             "application_name": "mercato-console"})
        return self.pool

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def counts(self) -> dict[str, int]:
        pool = await self._pool()
        if pool is None:
            return {}
        return {r[0]: r[1] for r in await pool.fetch(_COUNTS)}

    async def list(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        pool = await self._pool()
        if pool is None:
            return []
        return [_plain(r) for r in await pool.fetch(_LIST, status, limit)]

    async def one(self, saga_id: uuid.UUID) -> dict[str, Any] | None:
        pool = await self._pool()
        if pool is None:
            return None
        row = await pool.fetchrow(_ONE, saga_id)
        if row is None:
            return None
        inst = _plain(row)
        ctx = row["trace_context"]
        inst["trace_id"] = trace_id_of(json.loads(ctx) if isinstance(ctx, str) else ctx)
        del inst["trace_context"]
        started = row["created_at"]
        events = []
        for e in await pool.fetch(_EVENTS, saga_id):
            ev = _plain(e)
            ev["elapsed_ms"] = round((e["at"] - started).total_seconds() * 1000, 1)
            detail = e["detail"]
            ev["detail"] = json.loads(detail) if isinstance(detail, str) else detail
            events.append(ev)
        inst["events"] = events
        return inst
