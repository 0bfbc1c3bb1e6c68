"""Orders persistence: rows in, domain objects out. One session = one unit of work."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from orders.adapters.orm import orders
from orders.domain.model import Order, OrderLine


def _lines_json(lines: tuple[OrderLine, ...]) -> list[dict[str, Any]]:
    return [{"product_id": li.product_id, "sku": li.sku, "name": li.name,
             "quantity": li.quantity, "unit_price": str(li.unit_price)} for li in lines]


def _order(r: Row[Any]) -> Order:
    return Order(
        id=str(r.id), customer_id=r.customer_id, status=r.status,
        lines=tuple(OrderLine(li["product_id"], li["sku"], li["name"], int(li["quantity"]),
                              Decimal(li["unit_price"])) for li in r.lines),
        total=Decimal(r.total), currency=r.currency, customer_email=r.customer_email,
        shipping_address_id=r.shipping_address_id, reason=r.reason,
        cancel_requested=r.cancel_requested, created_at=r.created_at, updated_at=r.updated_at)


# Built once: SQLAlchemy does not cache an INSERT ... ON CONFLICT, and compiled this one
# afresh for every order placed.
_ORDER_COLUMNS = tuple(orders.c.keys())  # every column: add_once sets them all
_INSERT_ORDER = text(
    f"INSERT INTO orders ({', '.join(_ORDER_COLUMNS)}) "  # noqa: S608 -- constant names
    f"VALUES ({', '.join(':' + c for c in _ORDER_COLUMNS)}) "
    "ON CONFLICT ON CONSTRAINT uq_orders_customer_idempotency DO NOTHING RETURNING id",
).bindparams(bindparam("lines", type_=orders.c.lines.type))


class OrdersRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_once(self, order: Order, *, idempotency_key: str,
                       request_hash: str) -> bool:
        """Insert the order unless this customer used the key already; True if inserted.

        A concurrent insert with the same key waits for the first to commit, then does
        nothing: exactly one order per (customer, key), whatever the interleaving."""
        result = await self.session.execute(_INSERT_ORDER, {
            "id": uuid.UUID(order.id), "customer_id": order.customer_id,
            "customer_email": order.customer_email, "idempotency_key": idempotency_key,
            "request_hash": request_hash, "status": order.status, "reason": order.reason,
            "lines": _lines_json(order.lines), "total": order.total, "currency": order.currency,
            "shipping_address_id": order.shipping_address_id,
            "cancel_requested": order.cancel_requested, "created_at": order.created_at,
            "updated_at": order.updated_at})
        return result.first() is not None

    async def by_idempotency_key(self, customer_id: str,
                                 idempotency_key: str) -> tuple[Order, str] | None:
        """The order placed with this key and its request hash, if any."""
        row = (await self.session.execute(
            select(orders).where(orders.c.customer_id == customer_id,
                                 orders.c.idempotency_key == idempotency_key))).first()
        return (_order(row), row.request_hash) if row is not None else None

    async def get(self, order_id: str, *, for_update: bool = False) -> Order | None:
        try:
            key = uuid.UUID(order_id)
        except ValueError:
            return None
        stmt = select(orders).where(orders.c.id == key)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self.session.execute(stmt)).first()
        return _order(row) if row is not None else None

    async def listing(self, *, customer_id: str | None, status: str | None,
                      limit: int) -> list[Order]:
        stmt = select(orders)
        if customer_id is not None:
            stmt = stmt.where(orders.c.customer_id == customer_id)
        if status is not None:
            stmt = stmt.where(orders.c.status == status)
        stmt = stmt.order_by(orders.c.created_at.desc(), orders.c.id).limit(limit)
        return [_order(r) for r in (await self.session.execute(stmt)).all()]

    async def save(self, order: Order) -> None:
        """Persist a state change (lines, total and owner never change)."""
        await self.session.execute(
            update(orders).where(orders.c.id == uuid.UUID(order.id))
            .values(status=order.status, reason=order.reason,
                    cancel_requested=order.cancel_requested, updated_at=order.updated_at))
