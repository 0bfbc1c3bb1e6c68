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

from chassis.db import driver_execute, driver_fetch
from sqlalchemy import Row, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.adapters.orm import reservations, stock, stock_adjustments
from inventory.domain.model import RESERVED, Line, Reservation, Stock

# Two-key advisory locks live in their own key space, apart from the migrations' one-key lock.
_RESERVATION_LOCK_SPACE = 7243
_ADJUSTMENT_LOCK_SPACE = 7244
_LOCK_RESERVATION = text("SELECT pg_advisory_xact_lock(:space, hashtext(:id))")

# A command's statements (reserve, commit, release) run on asyncpg directly
# (chassis.db.driver_fetch, ADR 0046): two commands per order, ~6 statements each.
_LOCK = "SELECT pg_advisory_xact_lock($1, hashtext($2))"
_RESERVATION = ("SELECT reservation_id, order_id, status, expires_at, reason, short_skus, "
                "created_at, updated_at FROM reservations WHERE reservation_id = $1")
_LINES = ("SELECT reservation_id, sku, quantity FROM reservation_lines "
          "WHERE reservation_id = ANY($1::text[]) ORDER BY reservation_id, sku")
_LOCK_STOCK = ("SELECT sku, on_hand, reserved FROM stock WHERE sku = ANY($1::text[]) "
               "ORDER BY sku FOR UPDATE")
_SAVE_STOCK = ("UPDATE stock SET on_hand = x.on_hand, reserved = x.reserved, updated_at = now() "
               "FROM unnest($1::text[], $2::int[], $3::int[]) AS x(sku, on_hand, reserved) "
               "WHERE stock.sku = x.sku")
_ADD_RESERVATION = ("INSERT INTO reservations (reservation_id, order_id, status, expires_at, "
                    "reason, short_skus, created_at, updated_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
_ADD_LINES = ("INSERT INTO reservation_lines (reservation_id, sku, quantity) "
              "SELECT $1, sku, quantity FROM unnest($2::text[], $3::int[]) AS x(sku, quantity)")
_SAVE_RESERVATION = ("UPDATE reservations SET status = $2, reason = $3, updated_at = $4 "
                     "WHERE reservation_id = $1")


def _stock(row: Any) -> Stock:
    """A stock row: a SQLAlchemy Row or an asyncpg Record."""
    m = getattr(row, "_mapping", row)
    return Stock(m["sku"], m["on_hand"], m["reserved"])


class InventoryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- stock ------------------------------------------------------------------------------

    async def get_stock(self, sku: str) -> Stock | None:
        row = (await self.session.execute(select(stock).where(stock.c.sku == sku))).first()
        return _stock(row) if row else None

    async def stock_for(self, skus: Iterable[str]) -> dict[str, Stock]:
        rows = (await self.session.execute(
            select(stock).where(stock.c.sku.in_(list(skus))))).all()
        return {r.sku: _stock(r) for r in rows}

    async def lock_stock(self, skus: Iterable[str]) -> dict[str, Stock]:
        """Lock the rows of these SKUs (those that exist), in SKU order, for this transaction."""
        wanted = sorted(set(skus))
        if not wanted:
            return {}
        rows = await driver_fetch(self.session, _LOCK_STOCK, wanted)
        return {r["sku"]: _stock(r) for r in rows}

    async def create_stock(self, sku: str) -> bool:
        """A row with nothing on hand, unless one exists. True if this call created it."""
        result = await self.session.execute(
            insert(stock).values(sku=sku, on_hand=0, reserved=0)
            .on_conflict_do_nothing(index_elements=["sku"]))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def save_stock(self, items: Iterable[Stock]) -> None:
        rows = list(items)
        if rows:
            await driver_execute(self.session, _SAVE_STOCK, [r.sku for r in rows],
                                 [r.on_hand for r in rows], [r.reserved for r in rows])

    async def lock_adjustment_id(self, adjustment_id: str) -> None:
        """Two calls with one id (a retry racing its first try) run one after the other."""
        await self.session.execute(_LOCK_RESERVATION, {"space": _ADJUSTMENT_LOCK_SPACE,
                                                       "id": adjustment_id})

    async def get_adjustment(self, adjustment_id: str) -> Row[Any] | None:
        return (await self.session.execute(select(stock_adjustments).where(
            stock_adjustments.c.adjustment_id == adjustment_id))).first()

    async def add_adjustment(self, adjustment_id: str, sku: str, delta: int, outcome: str,
                             after: Stock) -> None:
        await self.session.execute(stock_adjustments.insert().values(
            adjustment_id=adjustment_id, sku=sku, delta=delta, outcome=outcome,
            on_hand=after.on_hand, reserved=after.reserved))

    # -- reservations -----------------------------------------------------------------------

    async def lock_reservation_id(self, reservation_id: str) -> None:
        await driver_fetch(self.session, _LOCK, _RESERVATION_LOCK_SPACE, reservation_id)

    async def get_reservation(self, reservation_id: str, *,
                              for_update: bool = False) -> Reservation | None:
        rows = await driver_fetch(
            self.session, _RESERVATION + (" FOR UPDATE" if for_update else ""), reservation_id)
        return (await self._with_lines(rows))[0] if rows else None

    async def claim_expired(self, now: datetime, limit: int) -> list[Reservation]:
        """Lock live reservations past their deadline that no other transaction holds.

        SKIP LOCKED lets several sweepers (one per instance) share the work; a reservation
        a command is working on right now is skipped and looked at again next round."""
        rows = (await self.session.execute(
            select(reservations)
            .where(reservations.c.status == RESERVED, reservations.c.expires_at <= now)
            .order_by(reservations.c.expires_at).limit(limit)
            .with_for_update(skip_locked=True))).all()
        return await self._with_lines(rows)

    async def add_reservation(self, r: Reservation) -> None:
        await driver_execute(self.session, _ADD_RESERVATION, r.reservation_id, r.order_id,
                             r.status, r.expires_at, r.reason, list(r.short_skus),
                             r.created_at, r.updated_at)
        if r.lines:
            await driver_execute(self.session, _ADD_LINES, r.reservation_id,
                                 [line.sku for line in r.lines],
                                 [line.quantity for line in r.lines])

    async def save_reservation(self, r: Reservation) -> None:
        """Persist a state change (the lines of a reservation never change)."""
        await driver_execute(self.session, _SAVE_RESERVATION, r.reservation_id, r.status,
                             r.reason, r.updated_at)

    async def _with_lines(self, rows: Sequence[Any]) -> list[Reservation]:
        """Reservations of these rows (SQLAlchemy Rows or asyncpg Records), with their lines."""
        if not rows:
            return []
        found = [getattr(r, "_mapping", r) for r in rows]
        line_rows = await driver_fetch(self.session, _LINES,
                                       [r["reservation_id"] for r in found])
        lines: dict[str, list[Line]] = {}
        for lr in line_rows:
            lines.setdefault(lr["reservation_id"], []).append(Line(lr["sku"], lr["quantity"]))
        return [Reservation(
            reservation_id=r["reservation_id"], order_id=r["order_id"], status=r["status"],
            lines=tuple(lines.get(r["reservation_id"], ())), expires_at=r["expires_at"],
            reason=r["reason"], short_skus=tuple(r["short_skus"] or ()),
            created_at=r["created_at"], updated_at=r["updated_at"]) for r in found]
