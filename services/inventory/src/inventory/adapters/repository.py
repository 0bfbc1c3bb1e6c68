"""Inventory persistence: rows in, domain objects out. One session = one unit of work.

Locking rules that keep concurrent commands correct and deadlock-free:
1. A command for a reservation first takes a transaction-scoped advisory lock on its id, so
   two commands for the same reservation (duplicates, or a release racing its reserve) run
   one after the other even when the reservation row does not exist yet.
2. Reservation rows are locked before stock rows, never the other way round.
3. Stock rows are locked in one statement, ordered by SKU, so every transaction takes them in
   the same order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from chassis.db import (
    advisory_xact_lock,
    as_columns,
    driver_fetch,
    flush_pending,
    inserting,
    last_per_key,
    register_deferred,
    write_at_commit,
)
from sqlalchemy import Row, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.adapters.orm import reservations, stock, stock_adjustments
from inventory.domain.model import RESERVED, Line, Reservation, Stock

# Two-key advisory locks live in their own key space, apart from the migrations' one-key lock.
RESERVATION_LOCK_SPACE = 7243
_ADJUSTMENT_LOCK_SPACE = 7244

# A command's statements (reserve, commit, release) run on asyncpg directly
# (chassis.db.driver_fetch, ADR 0046): two messages per order, 5 round trips each (ADR 0055).
# A reservation comes with its lines in the same round trip (ADR 0055): as two arrays in
# one order (by SKU, the order the lines are read in).
_RESERVATION = (
    "SELECT reservation_id, order_id, status, expires_at, reason, short_skus, created_at, "
    "updated_at, ARRAY(SELECT l.sku FROM reservation_lines l WHERE l.reservation_id = "
    "reservations.reservation_id ORDER BY l.sku) AS line_skus, "
    "ARRAY(SELECT l.quantity FROM reservation_lines l WHERE l.reservation_id = "
    "reservations.reservation_id ORDER BY l.sku) AS line_quantities "
    "FROM reservations WHERE reservation_id = $1")
_LINES = ("SELECT reservation_id, sku, quantity FROM reservation_lines "
          "WHERE reservation_id = ANY($1::text[]) ORDER BY reservation_id, sku")
_LOCK_STOCK = ("SELECT sku, on_hand, reserved FROM stock WHERE sku = ANY($1::text[]) "
               "ORDER BY sku FOR UPDATE")
# What a command changes (stock figures, a reservation and its lines, a reservation's status)
# is written at commit, with the outbox's rows, as ONE statement (chassis.db.write_at_commit,
# ADR 0052): a reserve was four writes and the outbox's, a commit or release three. Every read
# here writes what is pending first (``_written``), so a later message of a consumer's batch
# (one transaction) reads what an earlier one changed.
_STOCK_KIND = "inventory.stock"
_RESERVATION_KIND = "inventory.reservation"
_LINES_KIND = "inventory.reservation_lines"
_STATUS_KIND = "inventory.reservation_status"
_KINDS = (_STOCK_KIND, _RESERVATION_KIND, _LINES_KIND, _STATUS_KIND)
_SAVE_STOCK = ("UPDATE stock SET on_hand = x.on_hand, reserved = x.reserved, updated_at = now() "
               "FROM unnest($1::text[], $2::int[], $3::int[]) AS x(sku, on_hand, reserved) "
               "WHERE stock.sku = x.sku")
_ADD_LINES = ("INSERT INTO reservation_lines (reservation_id, sku, quantity) "
              "SELECT * FROM unnest($1::text[], $2::text[], $3::int[])")
_SAVE_RESERVATIONS = (
    "UPDATE reservations SET status = x.status, reason = x.reason, updated_at = x.updated_at "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) "
    "AS x(reservation_id, status, reason, updated_at) "
    "WHERE reservations.reservation_id = x.reservation_id")


register_deferred(_STOCK_KIND, lambda rows: (_SAVE_STOCK, as_columns(last_per_key(rows))))
register_deferred(_RESERVATION_KIND, inserting("reservations", (
    "reservation_id", "order_id", "status", "expires_at", "reason", "short_skus", "created_at",
    "updated_at")))
register_deferred(_LINES_KIND, lambda rows: (_ADD_LINES, as_columns(rows)))
register_deferred(_STATUS_KIND,
                  lambda rows: (_SAVE_RESERVATIONS, as_columns(last_per_key(rows))))


def _stock(row: Any) -> Stock:
    """A stock row: a SQLAlchemy Row or an asyncpg Record."""
    m = getattr(row, "_mapping", row)
    return Stock(m["sku"], m["on_hand"], m["reserved"])


class InventoryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- stock ------------------------------------------------------------------------------

    async def _written(self) -> None:
        """Write what this transaction changed here so far, before reading."""
        await flush_pending(self.session, _KINDS)

    async def get_stock(self, sku: str) -> Stock | None:
        await self._written()
        row = (await self.session.execute(select(stock).where(stock.c.sku == sku))).first()
        return _stock(row) if row else None

    async def stock_for(self, skus: Iterable[str]) -> dict[str, Stock]:
        await self._written()
        rows = (await self.session.execute(
            select(stock).where(stock.c.sku.in_(list(skus))))).all()
        return {r.sku: _stock(r) for r in rows}

    async def lock_stock(self, skus: Iterable[str]) -> dict[str, Stock]:
        """Lock the rows of these SKUs (those that exist), in SKU order, for this transaction."""
        wanted = sorted(set(skus))
        if not wanted:
            return {}
        await self._written()
        rows = await driver_fetch(self.session, _LOCK_STOCK, wanted)
        return {r["sku"]: _stock(r) for r in rows}

    async def create_stock(self, sku: str) -> bool:
        """A row with nothing on hand, unless one exists. True if this call created it."""
        await self._written()
        result = await self.session.execute(
            insert(stock).values(sku=sku, on_hand=0, reserved=0)
            .on_conflict_do_nothing(index_elements=["sku"]))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def save_stock(self, items: Iterable[Stock]) -> None:
        """Written at commit (or at the next read here)."""
        for r in items:
            await write_at_commit(self.session, _STOCK_KIND, (r.sku, r.on_hand, r.reserved))

    async def lock_adjustment_id(self, adjustment_id: str) -> None:
        """Two calls with one id (a retry racing its first try) run one after the other."""
        await advisory_xact_lock(self.session, _ADJUSTMENT_LOCK_SPACE, adjustment_id)

    async def get_adjustment(self, adjustment_id: str) -> Row[Any] | None:
        await self._written()
        return (await self.session.execute(select(stock_adjustments).where(
            stock_adjustments.c.adjustment_id == adjustment_id))).first()

    async def add_adjustment(self, adjustment_id: str, sku: str, delta: int, outcome: str,
                             after: Stock) -> None:
        await self.session.execute(stock_adjustments.insert().values(
            adjustment_id=adjustment_id, sku=sku, delta=delta, outcome=outcome,
            on_hand=after.on_hand, reserved=after.reserved))

    # -- reservations -----------------------------------------------------------------------

    async def lock_reservation_id(self, reservation_id: str) -> None:
        await advisory_xact_lock(self.session, RESERVATION_LOCK_SPACE, reservation_id)

    async def get_reservation(self, reservation_id: str, *,
                              for_update: bool = False) -> Reservation | None:
        await self._written()
        rows = await driver_fetch(
            self.session, _RESERVATION + (" FOR UPDATE" if for_update else ""), reservation_id)
        return (await self._with_lines(rows))[0] if rows else None

    async def claim_expired(self, now: datetime, limit: int) -> list[Reservation]:
        """Lock live reservations past their deadline that no other transaction holds.

        SKIP LOCKED lets several sweepers (one per instance) share the work; a reservation
        a command is working on right now is skipped and looked at again next round."""
        await self._written()
        rows = (await self.session.execute(
            select(reservations)
            .where(reservations.c.status == RESERVED, reservations.c.expires_at <= now)
            .order_by(reservations.c.expires_at).limit(limit)
            .with_for_update(skip_locked=True))).all()
        return await self._with_lines(rows)

    async def add_reservation(self, r: Reservation) -> None:
        """Written at commit (or at the next read here), with its lines."""
        await write_at_commit(self.session, _RESERVATION_KIND, (
            r.reservation_id, r.order_id, r.status, r.expires_at, r.reason,
            list(r.short_skus), r.created_at, r.updated_at))
        for line in r.lines:
            await write_at_commit(self.session, _LINES_KIND,
                                  (r.reservation_id, line.sku, line.quantity))

    async def save_reservation(self, r: Reservation) -> None:
        """A state change (the lines of a reservation never change), written at commit (or
        at the next read here). After its own insert if that still waits: one statement
        cannot insert a row and update it."""
        await flush_pending(self.session, (_RESERVATION_KIND,))
        await write_at_commit(self.session, _STATUS_KIND,
                              (r.reservation_id, r.status, r.reason, r.updated_at))

    async def _with_lines(self, rows: Sequence[Any]) -> list[Reservation]:
        """Reservations of these rows (SQLAlchemy Rows or asyncpg Records), with their lines."""
        if not rows:
            return []
        found = [getattr(r, "_mapping", r) for r in rows]
        lines: dict[str, list[Line]] = {}
        if "line_skus" in found[0]:  # read with the reservations (_RESERVATION)
            for r in found:
                lines[r["reservation_id"]] = [Line(sku, quantity) for sku, quantity in zip(
                    r["line_skus"], r["line_quantities"], strict=True)]
        else:
            await self._written()
            for lr in await driver_fetch(self.session, _LINES,
                                         [r["reservation_id"] for r in found]):
                lines.setdefault(lr["reservation_id"], []).append(Line(lr["sku"],
                                                                       lr["quantity"]))
        return [Reservation(
            reservation_id=r["reservation_id"], order_id=r["order_id"], status=r["status"],
            lines=tuple(lines.get(r["reservation_id"], ())), expires_at=r["expires_at"],
            reason=r["reason"], short_skus=tuple(r["short_skus"] or ()),
            created_at=r["created_at"], updated_at=r["updated_at"]) for r in found]
