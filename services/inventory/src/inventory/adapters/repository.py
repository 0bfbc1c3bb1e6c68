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

from sqlalchemy import Row, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.adapters.orm import reservation_lines, reservations, stock, stock_adjustments
from inventory.domain.model import RESERVED, Line, Reservation, Stock

# Two-key advisory locks live in their own key space, apart from the migrations' one-key lock.
_RESERVATION_LOCK_SPACE = 7243
_ADJUSTMENT_LOCK_SPACE = 7244
_LOCK_RESERVATION = text("SELECT pg_advisory_xact_lock(:space, hashtext(:id))")


def _stock(row: Row[Any]) -> Stock:
    return Stock(row.sku, row.on_hand, row.reserved)


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
        rows = (await self.session.execute(
            select(stock).where(stock.c.sku.in_(wanted)).order_by(stock.c.sku)
            .with_for_update())).all()
        return {r.sku: _stock(r) for r in rows}

    async def create_stock(self, sku: str) -> bool:
        """A row with nothing on hand, unless one exists. True if this call created it."""
        result = await self.session.execute(
            insert(stock).values(sku=sku, on_hand=0, reserved=0)
            .on_conflict_do_nothing(index_elements=["sku"]))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def save_stock(self, items: Iterable[Stock]) -> None:
        for s in items:
            await self.session.execute(
                update(stock).where(stock.c.sku == s.sku)
                .values(on_hand=s.on_hand, reserved=s.reserved, updated_at=func.now()))

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
        await self.session.execute(_LOCK_RESERVATION, {"space": _RESERVATION_LOCK_SPACE,
                                                       "id": reservation_id})

    async def get_reservation(self, reservation_id: str, *,
                              for_update: bool = False) -> Reservation | None:
        stmt = select(reservations).where(reservations.c.reservation_id == reservation_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self.session.execute(stmt)).first()
        if row is None:
            return None
        return (await self._with_lines([row]))[0]

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
        await self.session.execute(reservations.insert().values(
            reservation_id=r.reservation_id, order_id=r.order_id, status=r.status,
            expires_at=r.expires_at, reason=r.reason, short_skus=list(r.short_skus),
            created_at=r.created_at, updated_at=r.updated_at))
        if r.lines:
            await self.session.execute(reservation_lines.insert(), [
                {"reservation_id": r.reservation_id, "sku": line.sku, "quantity": line.quantity}
                for line in r.lines])

    async def save_reservation(self, r: Reservation) -> None:
        """Persist a state change (the lines of a reservation never change)."""
        await self.session.execute(
            update(reservations).where(reservations.c.reservation_id == r.reservation_id)
            .values(status=r.status, reason=r.reason, updated_at=r.updated_at))

    async def _with_lines(self, rows: Sequence[Row[Any]]) -> list[Reservation]:
        if not rows:
            return []
        ids = [r.reservation_id for r in rows]
        line_rows = (await self.session.execute(
            select(reservation_lines).where(reservation_lines.c.reservation_id.in_(ids))
            .order_by(reservation_lines.c.reservation_id, reservation_lines.c.sku))).all()
        lines: dict[str, list[Line]] = {}
        for lr in line_rows:
            lines.setdefault(lr.reservation_id, []).append(Line(lr.sku, lr.quantity))
        return [Reservation(
            reservation_id=r.reservation_id, order_id=r.order_id, status=r.status,
            lines=tuple(lines.get(r.reservation_id, ())), expires_at=r.expires_at,
            reason=r.reason, short_skus=tuple(r.short_skus or ()), created_at=r.created_at,
            updated_at=r.updated_at) for r in rows]
