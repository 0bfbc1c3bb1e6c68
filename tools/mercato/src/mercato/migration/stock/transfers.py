"""Transfers: units moved between the monolith's ``stock.on_hand`` and the inventory, each
exactly once across crashes (ADR 0034).

The log is ``legacy_stock_transfers`` in the monolith's database (legacy migration 0005),
so the monolith's half of a transfer commits in one transaction with its record:

- to the services: debit ``stock`` and write the row ``debited`` (one transaction); credit
  the inventory with an adjustment keyed by the transfer id (idempotent: a repeat after a
  crash answers the first result); mark it ``done``. A credit the inventory rejects (4xx)
  gives the units back to ``stock`` (``reverted``), in one transaction with the state.
- to the monolith: write the row ``pending``; debit the inventory by an adjustment keyed by
  the id (refused, 409, when fewer units are free: ``failed``, nothing moved); credit
  ``stock`` and mark it ``done`` in one transaction, guarded by ``state = 'pending'`` so a
  repeat credits nothing.

``finish`` takes a transfer from whatever state a crash left it in to the end; the
rebalancer finishes every open transfer before it starts a new one. Writes to ``stock``
carry ``legacy.origin = mercato-stock``: the outbox marks them as the migration's, and the
stock trigger classes them as transfers, not sales or receipts.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import asyncpg
import structlog

from mercato.migration.stock.inventory import Inventory, Rejected

log = structlog.get_logger("mercato.migration.stock")

ORIGIN = "mercato-stock"
TO_SERVICES, TO_LEGACY = "to_services", "to_legacy"
OPEN = ("debited", "pending")


@dataclass(frozen=True, slots=True)
class Transfer:
    id: uuid.UUID
    product_id: int
    sku: str
    direction: str
    quantity: int
    state: str


def _transfer(row: asyncpg.Record) -> Transfer:
    return Transfer(row["id"], row["product_id"], row["sku"], row["direction"],
                    row["quantity"], row["state"])


async def _mark_origin(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT set_config('legacy.origin', $1, true)", ORIGIN)


class Transfers:
    def __init__(self, pool: asyncpg.Pool, inventory: Inventory, *,
                 step_pause_s: float = 0.0) -> None:
        self.pool = pool
        self.inventory = inventory
        # A drill knob (0 in service): a pause after the inventory answered and before the
        # monolith's side records it, so a kill -9 can land in the middle of a transfer.
        self.step_pause_s = step_pause_s

    async def open(self) -> list[Transfer]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT * FROM legacy_stock_transfers "
                                    "WHERE state IN ('debited', 'pending') ORDER BY created_at")
        return [_transfer(r) for r in rows]

    async def to_services(self, product_id: int, sku: str, quantity: int) -> Transfer | None:
        """Up to ``quantity`` of the monolith's units (fewer if a checkout took some since
        they were counted); None when it has none left."""
        async with self.pool.acquire() as conn, conn.transaction():
            await _mark_origin(conn)
            on_hand = await conn.fetchval(
                "SELECT on_hand FROM stock WHERE product_id = $1 FOR UPDATE", product_id)
            quantity = min(quantity, on_hand or 0)
            if quantity <= 0:
                return None
            await conn.execute("UPDATE stock SET on_hand = on_hand - $2, updated_at = now() "
                               "WHERE product_id = $1", product_id, quantity)
            row = await conn.fetchrow(
                "INSERT INTO legacy_stock_transfers (id, product_id, sku, direction, "
                "quantity, state) VALUES ($1, $2, $3, $4, $5, 'debited') RETURNING *",
                uuid.uuid4(), product_id, sku, TO_SERVICES, quantity)
        return await self.finish(_transfer(row))

    async def to_legacy(self, product_id: int, sku: str, quantity: int) -> Transfer:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "INSERT INTO legacy_stock_transfers (id, product_id, sku, direction, "
                "quantity, state) VALUES ($1, $2, $3, $4, $5, 'pending') RETURNING *",
                uuid.uuid4(), product_id, sku, TO_LEGACY, quantity)
        return await self.finish(_transfer(row))

    async def finish(self, t: Transfer) -> Transfer:
        """Take an open transfer to its end. Raises Transient when the inventory cannot
        answer now: the transfer stays open and is finished by a later call."""
        if t.state not in OPEN:
            return t
        sign = 1 if t.direction == TO_SERVICES else -1
        try:
            got = await self.inventory.adjust(t.sku, str(t.id), sign * t.quantity)
        except Rejected as exc:
            return await self._close(t, "reverted" if sign > 0 else "failed", str(exc))
        if self.step_pause_s:
            await asyncio.sleep(self.step_pause_s)
        if not got.applied:
            return await self._close(t, "failed" if sign < 0 else "reverted",
                                     "not enough free units")
        return await self._close(t, "done", None)

    async def _close(self, t: Transfer, state: str, error: str | None) -> Transfer:
        async with self.pool.acquire() as conn, conn.transaction():
            await _mark_origin(conn)
            moved = await conn.fetchval(
                "UPDATE legacy_stock_transfers SET state = $2, error = $3, updated_at = now() "
                "WHERE id = $1 AND state = $4 RETURNING quantity", t.id, state, error, t.state)
            if moved is not None and (
                    (t.direction == TO_LEGACY and state == "done")
                    or (t.direction == TO_SERVICES and state == "reverted")):
                await conn.execute("UPDATE stock SET on_hand = on_hand + $2, "
                                   "updated_at = now() WHERE product_id = $1",
                                   t.product_id, t.quantity)
        log.info("stock_transfer", id=str(t.id), sku=t.sku, direction=t.direction,
                 quantity=t.quantity, state=state, error=error)
        return Transfer(t.id, t.product_id, t.sku, t.direction, t.quantity, state)
