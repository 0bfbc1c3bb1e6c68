"""Shipping persistence: rows in, domain objects out. One session = one unit of work.

Locking rules that keep concurrent commands and carrier sweeps correct:
1. A command for a shipment first takes a transaction-scoped advisory lock on its id, so two
   commands for the same shipment (duplicates, or a cancel racing its create) run one after
   the other even when the shipment row does not exist yet.
2. A command then locks the row (FOR UPDATE); the carrier claims rows with SKIP LOCKED, so a
   shipment is either moved by the carrier or handled by the command, one after the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from shipping.adapters.orm import shipment_history, shipments
from shipping.domain.model import STATUSES, Address, Line, Shipment, Step

# Two-key advisory locks live in their own key space, apart from the migrations' one-key lock.
_SHIPMENT_LOCK_SPACE = 7244
_LOCK_SHIPMENT = text("SELECT pg_advisory_xact_lock(:space, hashtext(:id))")


def _address_json(a: Address | None) -> dict[str, Any] | None:
    if a is None:
        return None
    return {"name": a.name, "line1": a.line1, "line2": a.line2, "city": a.city,
            "postal_code": a.postal_code, "country": a.country, "phone": a.phone}


def _address(doc: dict[str, Any] | None) -> Address | None:
    if doc is None:
        return None
    return Address(name=doc["name"], line1=doc["line1"], line2=doc.get("line2"),
                   city=doc["city"], postal_code=doc["postal_code"], country=doc["country"],
                   phone=doc.get("phone"))


# Built once: SQLAlchemy does not cache an INSERT ... ON CONFLICT (it compiled this one
# afresh for every status change).
_ADD_STEPS = text("INSERT INTO shipment_history (shipment_id, status, at) "
                  "VALUES (:shipment_id, :status, :at) ON CONFLICT DO NOTHING")


class ShippingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        # How many history steps of each shipment this repository read: a save writes only
        # the steps added since (re-sending all of them cost a statement per old step).
        self._steps_read: dict[str, int] = {}

    async def lock_shipment_id(self, shipment_id: str) -> None:
        await self.session.execute(_LOCK_SHIPMENT, {"space": _SHIPMENT_LOCK_SPACE,
                                                    "id": shipment_id})

    async def get(self, shipment_id: str, *, for_update: bool = False) -> Shipment | None:
        stmt = select(shipments).where(shipments.c.shipment_id == shipment_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self.session.execute(stmt)).first()
        if row is None:
            return None
        return (await self._with_history([row]))[0]

    async def by_tracking_number(self, tracking_number: str) -> Shipment | None:
        row = (await self.session.execute(
            select(shipments).where(shipments.c.tracking_number == tracking_number))).first()
        return (await self._with_history([row]))[0] if row else None

    async def listing(self, *, customer_id: str | None, order_id: str | None,
                      limit: int) -> list[Shipment]:
        """Real shipments (no tombstones), newest first; of one customer unless None."""
        stmt = select(shipments).where(shipments.c.customer_id.is_not(None))
        if customer_id is not None:
            stmt = stmt.where(shipments.c.customer_id == customer_id)
        if order_id is not None:
            stmt = stmt.where(shipments.c.order_id == order_id)
        stmt = stmt.order_by(shipments.c.created_at.desc(), shipments.c.shipment_id).limit(limit)
        return await self._with_history((await self.session.execute(stmt)).all())

    async def claim_due(self, now: datetime, limit: int) -> list[Shipment]:
        """Lock shipments whose next carrier move is due and that no other transaction holds.

        SKIP LOCKED lets several carriers (one per instance) share the work; a shipment a
        command is working on right now is skipped and looked at again next round."""
        rows = (await self.session.execute(
            select(shipments)
            .where(shipments.c.next_move_at.is_not(None), shipments.c.next_move_at <= now)
            .order_by(shipments.c.next_move_at).limit(limit)
            .with_for_update(skip_locked=True))).all()
        return await self._with_history(rows)

    async def add(self, s: Shipment) -> None:
        await self.session.execute(shipments.insert().values(
            shipment_id=s.shipment_id, order_id=s.order_id, customer_id=s.customer_id,
            status=s.status, tracking_number=s.tracking_number,
            address=_address_json(s.address),
            lines=[{"sku": line.sku, "quantity": line.quantity} for line in s.lines],
            next_move_at=s.next_move_at, reason=s.reason, created_at=s.created_at,
            updated_at=s.updated_at))
        await self._record_history(s)

    async def save(self, s: Shipment) -> None:
        """Persist a state change (address, lines and tracking number never change)."""
        await self.session.execute(
            update(shipments).where(shipments.c.shipment_id == s.shipment_id)
            .values(status=s.status, next_move_at=s.next_move_at, reason=s.reason,
                    updated_at=s.updated_at))
        await self._record_history(s)

    async def _record_history(self, s: Shipment) -> None:
        # Steps already stored are skipped; the primary key refuses a status reached twice.
        new = s.history[self._steps_read.get(s.shipment_id, 0):]
        if new:
            await self.session.execute(
                _ADD_STEPS, [{"shipment_id": s.shipment_id, "status": step.status,
                              "at": step.at} for step in new])
            self._steps_read[s.shipment_id] = len(s.history)

    async def _with_history(self, rows: Sequence[Row[Any]]) -> list[Shipment]:
        if not rows:
            return []
        ids = [r.shipment_id for r in rows]
        steps: dict[str, list[Step]] = {}
        for h in (await self.session.execute(
                select(shipment_history)
                .where(shipment_history.c.shipment_id.in_(ids)))).all():
            steps.setdefault(h.shipment_id, []).append(Step(h.status, h.at))
        for history in steps.values():  # by time; steps at the same instant in route order
            history.sort(key=lambda step: (step.at, STATUSES.index(step.status)))
        for shipment_id in ids:
            self._steps_read[shipment_id] = len(steps.get(shipment_id, []))
        return [Shipment(
            shipment_id=r.shipment_id, order_id=r.order_id, status=r.status,
            customer_id=r.customer_id, address=_address(r.address),
            lines=tuple(Line(line["sku"], line["quantity"]) for line in r.lines or ()),
            tracking_number=r.tracking_number, next_move_at=r.next_move_at, reason=r.reason,
            history=steps.get(r.shipment_id, []), created_at=r.created_at,
            updated_at=r.updated_at) for r in rows]
