"""Cart persistence: rows in, domain objects out. One session = one unit of work."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, delete, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from cart.adapters.orm import cart_items, checkouts
from cart.domain.model import Cart, CartLine

# Serialises the changes of one customer's cart (the size check and the write), so two
# concurrent adds cannot both squeeze past the limit. Released at commit or rollback.
_LOCK_CUSTOMER = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


@dataclass(frozen=True, slots=True)
class CheckoutRecord:
    order_id: str
    status: str
    request_hash: str


def _line(r: Row[Any]) -> CartLine:
    return CartLine(product_id=r.product_id, sku=r.sku, name=r.name, quantity=r.quantity,
                    unit_price=Decimal(r.unit_price), currency=r.currency,
                    available=r.available)


class CartRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self, customer_id: str) -> None:
        await self.session.execute(_LOCK_CUSTOMER, {"key": f"cart:{customer_id}"})

    async def get(self, customer_id: str) -> Cart:
        rows = await self.session.execute(
            select(cart_items).where(cart_items.c.customer_id == customer_id)
            .order_by(cart_items.c.added_at, cart_items.c.product_id))
        return Cart(customer_id, tuple(_line(r) for r in rows))

    async def put_line(self, customer_id: str, line: CartLine) -> None:
        """Insert the line or replace its quantity and catalog data (price refreshed)."""
        values = {"sku": line.sku, "name": line.name, "quantity": line.quantity,
                  "unit_price": line.unit_price, "currency": line.currency,
                  "available": line.available}
        stmt = insert(cart_items).values(customer_id=customer_id, product_id=line.product_id,
                                         **values)
        await self.session.execute(stmt.on_conflict_do_update(
            constraint="pk_cart_items", set_={**values, "updated_at": func.now()}))

    async def remove_line(self, customer_id: str, product_id: str) -> bool:
        result = await self.session.execute(
            delete(cart_items).where(cart_items.c.customer_id == customer_id,
                                     cart_items.c.product_id == product_id)
            .returning(cart_items.c.product_id))
        return result.first() is not None

    async def remove_ordered(self, customer_id: str, items: list[tuple[str, int]]) -> int:
        """Remove the lines that were ordered, as they were ordered: a line changed while
        the checkout ran (another quantity) stays in the cart."""
        result = await self.session.execute(
            delete(cart_items).where(
                cart_items.c.customer_id == customer_id,
                tuple_(cart_items.c.product_id, cart_items.c.quantity).in_(items))
            .returning(cart_items.c.product_id))
        return len(result.all())

    async def checkout(self, customer_id: str, idempotency_key: str) -> CheckoutRecord | None:
        row = (await self.session.execute(
            select(checkouts).where(checkouts.c.customer_id == customer_id,
                                    checkouts.c.idempotency_key == idempotency_key))).first()
        if row is None:
            return None
        return CheckoutRecord(row.order_id, row.status, row.request_hash)

    async def record_checkout(self, customer_id: str, idempotency_key: str,
                              record: CheckoutRecord) -> bool:
        """Remember the order a checkout became; False when a concurrent identical
        checkout recorded it first (the row is then left as it is)."""
        result = await self.session.execute(
            insert(checkouts).values(customer_id=customer_id, idempotency_key=idempotency_key,
                                     request_hash=record.request_hash,
                                     order_id=record.order_id, status=record.status)
            .on_conflict_do_nothing(constraint="pk_checkouts")
            .returning(checkouts.c.order_id))
        return result.first() is not None

    # Catalog events: every cart holding the product follows the catalog.

    async def reprice(self, product_id: str, unit_price: Decimal, currency: str) -> int:
        result = await self.session.execute(
            update(cart_items).where(cart_items.c.product_id == product_id)
            .values(unit_price=unit_price, currency=currency, updated_at=func.now())
            .returning(cart_items.c.customer_id))
        return len(result.all())

    async def rename(self, product_id: str, sku: str, name: str) -> int:
        result = await self.session.execute(
            update(cart_items).where(cart_items.c.product_id == product_id)
            .values(sku=sku, name=name, updated_at=func.now())
            .returning(cart_items.c.customer_id))
        return len(result.all())

    async def mark_unavailable(self, product_id: str) -> int:
        result = await self.session.execute(
            update(cart_items).where(cart_items.c.product_id == product_id,
                                     cart_items.c.available.is_(True))
            .values(available=False, updated_at=func.now())
            .returning(cart_items.c.customer_id))
        return len(result.all())
