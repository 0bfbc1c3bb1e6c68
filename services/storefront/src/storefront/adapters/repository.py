"""Rows of the storefront's database, read and written through the unit of work's session."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.adapters.orm import checkouts, sessions, sign_ins


class SessionRows:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def get(self, id_hash: str, *, for_update: bool = False) -> dict[str, Any] | None:
        query = sa.select(sessions).where(sessions.c.id_hash == id_hash)
        if for_update:
            query = query.with_for_update()
        row = (await self.s.execute(query)).mappings().first()
        return dict(row) if row else None

    async def add(self, **values: Any) -> None:
        await self.s.execute(sa.insert(sessions).values(**values))

    async def update(self, id_hash: str, **values: Any) -> None:
        await self.s.execute(sa.update(sessions).where(sessions.c.id_hash == id_hash)
                             .values(**values))

    async def delete(self, id_hash: str) -> None:
        await self.s.execute(sa.delete(sessions).where(sessions.c.id_hash == id_hash))


class SignInRows:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def put(self, **values: Any) -> None:
        """One sign-in under way per browser: a new one replaces the last."""
        statement = insert(sign_ins).values(**values)
        await self.s.execute(statement.on_conflict_do_update(
            index_elements=["id_hash"],
            set_={k: statement.excluded[k] for k in values if k != "id_hash"}))

    async def take(self, id_hash: str, state: str) -> dict[str, Any] | None:
        """The browser's sign-in with this state, removed as it is read: a callback is
        accepted once. Another state leaves the row (a forged callback cannot end the
        person's own sign-in)."""
        row = (await self.s.execute(
            sa.delete(sign_ins).where(sign_ins.c.id_hash == id_hash, sign_ins.c.state == state)
            .returning(*sign_ins.c))).mappings().first()
        return dict(row) if row else None

    async def delete_older_than(self, moment: Any) -> None:
        await self.s.execute(sa.delete(sign_ins).where(sign_ins.c.created_at < moment))


class CheckoutRows:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def claim(self, key: str, customer_id: str) -> dict[str, Any] | None:
        """The checkout attempt with this key, locked until the transaction ends: a second
        submit of the same form (double click, reload) waits here for the first to finish,
        then finds its order. None when the key is another customer's."""
        await self.s.execute(insert(checkouts).values(checkout_key=key, customer_id=customer_id)
                             .on_conflict_do_nothing(index_elements=["checkout_key"]))
        row = (await self.s.execute(
            sa.select(checkouts).where(checkouts.c.checkout_key == key).with_for_update()
        )).mappings().first()
        if row is None or row["customer_id"] != customer_id:
            return None
        return dict(row)

    async def update(self, key: str, **values: Any) -> None:
        await self.s.execute(sa.update(checkouts).where(checkouts.c.checkout_key == key)
                             .values(**values))

    async def by_order(self, order_id: str, customer_id: str) -> dict[str, Any] | None:
        row = (await self.s.execute(
            sa.select(checkouts).where(checkouts.c.order_id == order_id,
                                       checkouts.c.customer_id == customer_id)
        )).mappings().first()
        return dict(row) if row else None

    async def mark_cart_cleared(self, key: str) -> bool:
        """True for the one caller that flips the flag: the ordered lines leave the cart
        once, even when two order pages see the approval together."""
        result = await self.s.execute(
            sa.update(checkouts).where(checkouts.c.checkout_key == key,
                                       checkouts.c.cart_cleared.is_(False))
            .values(cart_cleared=True))
        return bool(result.rowcount)  # type: ignore[attr-defined]
