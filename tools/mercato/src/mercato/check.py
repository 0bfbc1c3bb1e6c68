"""`mercato check`: the shop's invariants, read from every service's own database and from
the simulated third parties (the payment provider, the mail sink).

Each service owns its data, so the checker reads each database with that service's own role
(the runtime's secrets) and joins across them in memory; the simulators are read through
their HTTP side doors. It reports, and changes nothing. The rules are in
``mercato.invariants``; what each one means is in docs/operations.md.

The platform catches up asynchronously (events, the carrier's clock): a rule that compares
an order with what other services made of it judges only orders unchanged for ``grace_s``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
from chassis.messaging.relay import asyncpg_dsn

from mercato.invariants import Sources, Violation, evaluate
from mercato.runtime import control
from mercato.runtime.paths import Home
from mercato.runtime.postgres import Postgres
from mercato.runtime.services import SERVICES

__all__ = ["DEFAULT_GRACE_S", "DEFAULT_OUTBOX_BOUND_S", "Violation", "check", "evaluate"]

DEFAULT_GRACE_S = 30.0
# The relay publishes within a second while NATS is up; a row older than this is stuck.
DEFAULT_OUTBOX_BOUND_S = 30.0

PROVIDER, MAILSINK = "payments-provider", "mailsink"

_OUTBOX = ("SELECT count(*) AS unpublished, extract(epoch FROM now() - min(created_at)) "
           "AS oldest_s FROM outbox WHERE published_at IS NULL")


class SideDoorError(Exception):
    pass


async def _fetch(urls: dict[str, str | None], service: str, sql: str,
                 *args: Any) -> list[asyncpg.Record]:
    url = urls.get(service)
    if url is None:
        return []
    conn = await asyncpg.connect(asyncpg_dsn(url), timeout=5)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _outbox(urls: dict[str, str | None], service: str) -> dict[str, Any] | None:
    """The service's unpublished outbox rows (count, age of the oldest); None without one."""
    url = urls.get(service)
    if url is None:
        return None
    conn = await asyncpg.connect(asyncpg_dsn(url), timeout=5)
    try:
        if await conn.fetchval("SELECT to_regclass('outbox')") is None:
            return None
        row = await conn.fetchrow(_OUTBOX)
    finally:
        await conn.close()
    return {"service": service, "unpublished": row["unpublished"],
            "oldest_s": float(row["oldest_s"] or 0)}


async def side_door(home: Home, simulator: str, path: str) -> Any:
    """GET ``path`` from a simulator's HTTP side door, with the home's token for it; None
    when this platform runs no such simulator. The one place that reads the simulators."""
    state = control.read_state(home) or {}
    port = ((state.get("processes") or {}).get(simulator) or {}).get("port")
    if port is None:
        return None
    url = f"http://127.0.0.1:{port}{path}"
    token = (home.read_secret(f"{simulator}-api-token") or {}).get("token")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http, \
                http.get(url, headers=headers) as resp:
            if resp.status != 200:
                raise SideDoorError(f"GET {url} answered {resp.status}")
            return await resp.json()
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        raise SideDoorError(f"GET {url}: {type(exc).__name__}: {exc}") from exc


async def _read_side_door(home: Home, simulator: str, path: str,
                          unread: list[Violation]) -> Any:
    try:
        return await side_door(home, simulator, path)
    except SideDoorError as exc:
        unread.append(Violation("the checker can read every source", simulator, str(exc)))
        return None


async def check(home: Home, *, grace_s: float = DEFAULT_GRACE_S,
                outbox_bound_s: float = DEFAULT_OUTBOX_BOUND_S) -> list[Violation]:
    pg = Postgres(home, home.ports().postgres)
    urls = {s: pg.service_database_url(s) for s in SERVICES}
    unread: list[Violation] = []
    (orders, stuck, ledger, stock, held, shipments, notes, history, payments,
     *outboxes) = await asyncio.gather(
        _fetch(urls, "orders",
               "SELECT id::text AS id, status, total, "
               "updated_at < now() - make_interval(secs => $1) AS settled FROM orders",
               grace_s),
        _fetch(urls, "orders",
               "SELECT s.id::text AS id, s.status, s.deadline_at FROM saga_instances s "
               "WHERE s.status IN ('RUNNING', 'COMPENSATING') AND s.deadline_at < now() "
               "- make_interval(secs => $1)", grace_s),
        _fetch(urls, "payments",
               "SELECT order_id, "
               "coalesce(sum(amount) FILTER (WHERE kind = 'capture'), 0) AS captured, "
               "coalesce(sum(amount) FILTER (WHERE kind = 'refund'), 0) AS refunded, "
               "count(*) FILTER (WHERE kind = 'capture') AS captures "
               "FROM ledger_entries GROUP BY order_id"),
        _fetch(urls, "inventory", "SELECT sku, on_hand, reserved FROM stock "
                                  "WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand"),
        _fetch(urls, "inventory", "SELECT reservation_id, order_id, status FROM reservations "
                                  "WHERE status IN ('reserved', 'committed', 'released')"),
        # The carrier's own schedule says when a shipment moves next: late by more than the
        # grace, the carrier is not working (see docs/operations.md).
        _fetch(urls, "shipping",
               "SELECT shipment_id, order_id, status, next_move_at, "
               "extract(epoch FROM now() - next_move_at) AS late_s FROM shipments"),
        _fetch(urls, "notifications", "SELECT order_id, kind, count(*) AS n FROM notifications "
                                      "GROUP BY order_id, kind HAVING count(*) > 1"),
        _fetch(urls, "order_history", "SELECT order_id, status, total FROM order_view "
                                      "WHERE status IS NOT NULL"),
        _fetch(urls, "payments", "SELECT payment_id, order_id FROM payments"),
        *(_outbox(urls, s) for s in SERVICES))
    charges = await _read_side_door(home, PROVIDER, "/charges", unread)
    mails = await _read_side_door(home, MAILSINK, "/messages", unread)
    return unread + evaluate(
        orders=orders, stuck=stuck, ledger=ledger, stock=stock, held=held,
        shipments=shipments, notes=notes,
        sources=Sources(
            outboxes=[o for o in outboxes if o is not None], outbox_bound_s=outbox_bound_s,
            history=history if urls.get("order_history") else None,
            payments=payments, charges=None if charges is None else charges["items"],
            mails=mails, grace_s=grace_s))
