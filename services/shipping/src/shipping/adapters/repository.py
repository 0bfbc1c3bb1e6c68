"""Shipping persistence: rows in, domain objects out. One session = one unit of work.

Locking rules that keep concurrent commands and carrier sweeps correct:
1. A command for a shipment first takes a transaction-scoped advisory lock on its id, so two
   commands for the same shipment (duplicates, or a cancel racing its create) run one after
   the other even when the shipment row does not exist yet.
2. A command then locks the row (FOR UPDATE); the carrier claims rows with SKIP LOCKED, so a
   shipment is either moved by the carrier or handled by the command, one after the other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shipping.adapters.orm import shipments
from shipping.domain.model import STATUSES, Address, Line, Shipment, Step

# Two-key advisory locks live in their own key space, apart from the migrations' one-key lock.
SHIPMENT_LOCK_SPACE = 7244

# The statements of a command (create, release, cancel) and of the carrier's rounds (three
# moves per order) run on asyncpg directly (chassis.db.driver_fetch, ADR 0046): they run for
# every order. Reads for the API (by tracking number, listings) stay on SQLAlchemy Core.
# A shipment comes with its history in the same round trip (ADR 0055): its steps as two
# arrays in one order (each status is reached once, so (at, status) orders them).
_STEPS = ("ARRAY(SELECT h.status FROM shipment_history h WHERE h.shipment_id = "
          "shipments.shipment_id ORDER BY h.at, h.status) AS step_statuses, "
          "ARRAY(SELECT h.at FROM shipment_history h WHERE h.shipment_id = "
          "shipments.shipment_id ORDER BY h.at, h.status) AS step_ats")
# _STEPS is a constant: nothing from outside reaches these strings.
_SHIPMENT = ("SELECT shipment_id, order_id, customer_id, status, tracking_number, address, "  # noqa: S608
             f"lines, next_move_at, reason, created_at, updated_at, {_STEPS} FROM shipments "
             "WHERE shipment_id = $1")
_CLAIM_DUE = ("SELECT shipment_id, order_id, customer_id, status, tracking_number, address, "  # noqa: S608
              f"lines, next_move_at, reason, created_at, updated_at, {_STEPS} FROM shipments "
              "WHERE next_move_at IS NOT NULL AND next_move_at <= $1 "
              "ORDER BY next_move_at LIMIT $2 FOR UPDATE SKIP LOCKED")
_HISTORY = ("SELECT shipment_id, status, at FROM shipment_history "
            "WHERE shipment_id = ANY($1::text[])")
# What a command or a carrier round changes (a shipment, its status, its new history steps) is
# written at commit, with its events, as ONE statement (chassis.db.write_at_commit, ADR 0052):
# a create or a move was two writes and the outbox's. Every read here writes what is pending
# first, so a later message of a consumer's batch (one transaction) reads what an earlier one
# changed.
_ADD_KIND = "shipping.shipment"
_SAVE_KIND = "shipping.shipment_change"
_STEPS_KIND = "shipping.history_step"
_KINDS = (_ADD_KIND, _SAVE_KIND, _STEPS_KIND)
_SAVE_SHIPMENTS = (
    "UPDATE shipments SET status = x.status, next_move_at = x.next_move_at, "
    "reason = x.reason, updated_at = x.updated_at "
    "FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::timestamptz[]) "
    "AS x(shipment_id, status, next_move_at, reason, updated_at) "
    "WHERE shipments.shipment_id = x.shipment_id")
# The primary key refuses a status reached twice.
_ADD_STEPS = ("INSERT INTO shipment_history (shipment_id, status, at) "
              "SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]) "
              "ON CONFLICT DO NOTHING")


register_deferred(_ADD_KIND, inserting("shipments", (
    "shipment_id", "order_id", "customer_id", "status", "tracking_number", "address", "lines",
    "next_move_at", "reason", "created_at", "updated_at")))
register_deferred(_SAVE_KIND, lambda rows: (_SAVE_SHIPMENTS, as_columns(last_per_key(rows))))
register_deferred(_STEPS_KIND, lambda rows: (_ADD_STEPS, as_columns(rows)))


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


class ShippingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        # How many history steps of each shipment this repository read: a save writes only
        # the steps added since (re-sending all of them cost a statement per old step).
        self._steps_read: dict[str, int] = {}

    async def lock_shipment_id(self, shipment_id: str) -> None:
        await advisory_xact_lock(self.session, SHIPMENT_LOCK_SPACE, shipment_id)

    async def get(self, shipment_id: str, *, for_update: bool = False) -> Shipment | None:
        await flush_pending(self.session, _KINDS)
        rows = await driver_fetch(
            self.session, _SHIPMENT + (" FOR UPDATE" if for_update else ""), shipment_id)
        return (await self._with_history(rows))[0] if rows else None

    async def by_tracking_number(self, tracking_number: str) -> Shipment | None:
        await flush_pending(self.session, _KINDS)
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
        await flush_pending(self.session, _KINDS)
        return await self._with_history((await self.session.execute(stmt)).all())

    async def claim_due(self, now: datetime, limit: int) -> list[Shipment]:
        """Lock shipments whose next carrier move is due and that no other transaction holds.

        SKIP LOCKED lets several carriers (one per instance) share the work; a shipment a
        command is working on right now is skipped and looked at again next round."""
        await flush_pending(self.session, _KINDS)
        return await self._with_history(await driver_fetch(self.session, _CLAIM_DUE, now, limit))

    async def add(self, s: Shipment) -> None:
        """Written at commit (or at the next read here), with its history."""
        # JSONB as JSON text (the codec SQLAlchemy installs on the connection takes it so);
        # json.dumps(None) keeps a tombstone's address JSON null, as Core's JSONB stored it.
        await write_at_commit(self.session, _ADD_KIND, (
            s.shipment_id, s.order_id, s.customer_id, s.status, s.tracking_number,
            json.dumps(_address_json(s.address)),
            json.dumps([{"sku": line.sku, "quantity": line.quantity} for line in s.lines]),
            s.next_move_at, s.reason, s.created_at, s.updated_at))
        await self._record_history(s)

    async def save(self, s: Shipment) -> None:
        """A state change (address, lines and tracking number never change), written at
        commit (or at the next read here); after the shipment's insert if that still waits:
        one statement cannot insert a row and update it."""
        await flush_pending(self.session, (_ADD_KIND,))
        await write_at_commit(self.session, _SAVE_KIND, (
            s.shipment_id, s.status, s.next_move_at, s.reason, s.updated_at))
        await self._record_history(s)

    async def _record_history(self, s: Shipment) -> None:
        # Steps already stored are skipped; the primary key refuses a status reached twice.
        new = s.history[self._steps_read.get(s.shipment_id, 0):]
        for step in new:
            await write_at_commit(self.session, _STEPS_KIND, (s.shipment_id, step.status, step.at))
        self._steps_read[s.shipment_id] = len(s.history)

    async def _with_history(self, rows: Sequence[Any]) -> list[Shipment]:
        """Shipments of these rows (SQLAlchemy Rows or asyncpg Records), with their history."""
        if not rows:
            return []
        found = [getattr(r, "_mapping", r) for r in rows]
        ids = [r["shipment_id"] for r in found]
        steps: dict[str, list[Step]] = {}
        if "step_statuses" in found[0]:  # read with the shipments (_STEPS)
            for r in found:
                steps[r["shipment_id"]] = [Step(status, at) for status, at in zip(
                    r["step_statuses"], r["step_ats"], strict=True)]
        else:
            await flush_pending(self.session, _KINDS)
            for h in await driver_fetch(self.session, _HISTORY, ids):
                steps.setdefault(h["shipment_id"], []).append(Step(h["status"], h["at"]))
        for history in steps.values():  # by time; steps at the same instant in route order
            history.sort(key=lambda step: (step.at, STATUSES.index(step.status)))
        for shipment_id in ids:
            self._steps_read[shipment_id] = len(steps.get(shipment_id, []))
        return [Shipment(
            shipment_id=r["shipment_id"], order_id=r["order_id"], status=r["status"],
            customer_id=r["customer_id"], address=_address(r["address"]),
            lines=tuple(Line(line["sku"], line["quantity"]) for line in r["lines"] or ()),
            tracking_number=r["tracking_number"], next_move_at=r["next_move_at"],
            reason=r["reason"], history=steps.get(r["shipment_id"], []),
            created_at=r["created_at"], updated_at=r["updated_at"]) for r in found]
