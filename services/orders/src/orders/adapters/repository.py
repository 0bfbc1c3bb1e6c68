"""Orders persistence: rows in, domain objects out. One session = one unit of work."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

from chassis.db import (
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

from orders.adapters.orm import orders
from orders.domain.model import Order, OrderLine


def _lines_json(lines: tuple[OrderLine, ...]) -> str:
    # Encoded as SQLAlchemy's JSONB bind did (json.dumps, no json_serializer on the engine):
    # the jsonb codec it installed on the connection takes the text, not the object.
    return json.dumps([{"product_id": li.product_id, "sku": li.sku, "name": li.name,
                        "quantity": li.quantity, "unit_price": str(li.unit_price)}
                       for li in lines])


def _order(row: Any) -> Order:
    """An order row: a SQLAlchemy Row or an asyncpg Record (its jsonb decoded either way)."""
    m = getattr(row, "_mapping", row)
    return Order(
        id=str(m["id"]), customer_id=m["customer_id"], status=m["status"],
        lines=tuple(OrderLine(li["product_id"], li["sku"], li["name"], int(li["quantity"]),
                              Decimal(li["unit_price"])) for li in m["lines"]),
        total=Decimal(m["total"]), currency=m["currency"], customer_email=m["customer_email"],
        shipping_address_id=m["shipping_address_id"], reason=m["reason"],
        cancel_requested=m["cancel_requested"], created_at=m["created_at"],
        updated_at=m["updated_at"])


# What runs for every order (placing it: the key's lookup and the insert; its saga's end and
# a cancel: the locked load and the save) goes to asyncpg directly (chassis.db.driver_fetch,
# ADR 0046's pattern); the listing, for the API only, stays on Core.
_COLUMNS = ("id, customer_id, customer_email, idempotency_key, request_hash, status, reason, "
            "lines, total, currency, shipping_address_id, cancel_requested, created_at, "
            "updated_at")
# _COLUMNS is a constant: nothing from outside reaches these strings.
_BY_KEY = (f"SELECT {_COLUMNS} FROM orders "  # noqa: S608
           "WHERE customer_id = $1 AND idempotency_key = $2")
_GET = f"SELECT {_COLUMNS} FROM orders WHERE id = $1"  # noqa: S608
# A new order is written at commit, with its OrderPlaced, its saga and the saga's first
# command, as ONE statement sent alone (no BEGIN, no COMMIT: ADR 0055). A second order under
# the same key breaks uq_orders_customer_idempotency, and the whole statement writes nothing.
_ADD_KIND = "orders.order_added"
IDEMPOTENCY_CONSTRAINT = "uq_orders_customer_idempotency"
register_deferred(_ADD_KIND, inserting("orders", tuple(_COLUMNS.split(", "))))
# An order's change (its saga's end, a cancel) is written at commit, with the saga's state,
# history and commands, as ONE statement (chassis.db.write_at_commit, ADR 0052). Reads here
# write what waits first.
_SAVE_KIND = "orders.order_change"
_SAVE = ("UPDATE orders SET status = x.status, reason = x.reason, "
         "cancel_requested = x.cancel_requested, updated_at = x.updated_at "
         "FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bool[], $5::timestamptz[]) "
         "AS x(id, status, reason, cancel_requested, updated_at) WHERE orders.id = x.id")
register_deferred(_SAVE_KIND, lambda rows: (_SAVE, as_columns(last_per_key(rows))))


class OrdersRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, order: Order, *, idempotency_key: str, request_hash: str) -> None:
        """Insert the order at commit. Its customer's key is unique: a commit that would place
        a second order under it fails with an IntegrityError naming
        ``IDEMPOTENCY_CONSTRAINT`` (a concurrent insert with the same key waits for the first
        to commit, then fails), so there is exactly one order per (customer, key)."""
        await write_at_commit(self.session, _ADD_KIND, (
            uuid.UUID(order.id), order.customer_id, order.customer_email, idempotency_key,
            request_hash, order.status, order.reason, _lines_json(order.lines), order.total,
            order.currency, order.shipping_address_id, order.cancel_requested,
            order.created_at, order.updated_at))

    async def by_idempotency_key(self, customer_id: str,
                                 idempotency_key: str) -> tuple[Order, str] | None:
        """The order placed with this key and its request hash, if any."""
        await flush_pending(self.session, (_ADD_KIND, _SAVE_KIND))
        rows = await driver_fetch(self.session, _BY_KEY, customer_id, idempotency_key)
        return (_order(rows[0]), rows[0]["request_hash"]) if rows else None

    async def get(self, order_id: str, *, for_update: bool = False) -> Order | None:
        try:
            key = uuid.UUID(order_id)
        except ValueError:
            return None
        await flush_pending(self.session, (_ADD_KIND, _SAVE_KIND))
        rows = await driver_fetch(self.session, _GET + (" FOR UPDATE" if for_update else ""),
                                  key)
        return _order(rows[0]) if rows else None

    async def listing(self, *, customer_id: str | None, status: str | None,
                      limit: int) -> list[Order]:
        stmt = select(orders)
        if customer_id is not None:
            stmt = stmt.where(orders.c.customer_id == customer_id)
        if status is not None:
            stmt = stmt.where(orders.c.status == status)
        stmt = stmt.order_by(orders.c.created_at.desc(), orders.c.id).limit(limit)
        await flush_pending(self.session, (_ADD_KIND, _SAVE_KIND))
        return [_order(r) for r in (await self.session.execute(stmt)).all()]

    async def save(self, order: Order) -> None:
        """A state change (lines, total and owner never change), written at commit (or at
        the next read here)."""
        await write_at_commit(self.session, _SAVE_KIND, (
            uuid.UUID(order.id), order.status, order.reason, order.cancel_requested,
            order.updated_at))
