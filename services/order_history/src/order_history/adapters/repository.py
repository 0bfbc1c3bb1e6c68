"""order_history persistence: rows of ``order_view`` in, ``OrderView``s out.

``lock`` makes sure the order's row exists and holds it for the transaction, so the three
consumers (and a rebuild) merging events about the same order queue up instead of each
merging into a stale copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chassis.clock import utc_now
from chassis.db import driver_execute, driver_fetch
from chassis.messaging.inbox import forget_consumers
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from order_history.adapters.orm import order_view
from order_history.domain.model import OrderView

_FIELDS = ("customer_id", "status", "total", "currency", "lines", "reason", "payment_status",
           "amount_captured", "amount_refunded", "shipment_status", "tracking_number",
           "placed_at", "last_event_at")


# Every event runs ``lock`` and most run ``save``: as fixed SQL on the unit of work's asyncpg
# connection (chassis.db.driver_fetch, ADR 0046), past SQLAlchemy's ~0.1 ms of client CPU a
# statement. The API's reads and the rebuild stay on Core.
_LOCK = (
    "INSERT INTO order_view (order_id, last_event_at) VALUES ($1, $2) "  # noqa: S608
    "ON CONFLICT (order_id) DO UPDATE SET order_id = EXCLUDED.order_id "
    f"RETURNING {', '.join(order_view.c.keys())}")
_SAVE = (
    "UPDATE order_view SET "  # noqa: S608
    + ", ".join(f"{f} = ${i}" for i, f in enumerate((*_FIELDS, "updated_at"), 2))
    + " WHERE order_id = $1")
# An order's first event writes its whole row in one statement (ADR 0052); the row is there
# already for a later one, which then locks and merges as before.
_ADD_IF_NEW = (
    f"INSERT INTO order_view (order_id, {', '.join(_FIELDS)}, updated_at) "  # noqa: S608
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(_FIELDS) + 3))}) "
    "ON CONFLICT (order_id) DO NOTHING RETURNING order_id")


@dataclass(frozen=True)
class StoredView:
    view: OrderView
    updated_at: datetime


@dataclass(frozen=True)
class Page:
    items: list[StoredView]
    total: int


def _stored(row: Any) -> StoredView:
    """A row of order_view: a SQLAlchemy Row or an asyncpg Record."""
    m = getattr(row, "_mapping", row)
    return StoredView(OrderView(m["order_id"], **{f: m[f] for f in _FIELDS}), m["updated_at"])


def _values(view: OrderView) -> list[Any]:
    # The JSONB codec SQLAlchemy put on the connection takes the JSON text; None is written
    # as JSON null, as the Core statement's JSONB type did.
    return [json.dumps(view.lines) if f == "lines" else getattr(view, f) for f in _FIELDS]


class OrderViewRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self, order_id: str, first_event_at: datetime) -> OrderView:
        """The order's current view, its row created if new and locked until commit.

        One statement: ON CONFLICT DO UPDATE (a no-op update) locks an existing row and
        returns it as it is, where insert-if-missing then SELECT FOR UPDATE took two."""
        [row] = await driver_fetch(self.session, _LOCK, order_id, first_event_at)
        return _stored(row).view

    async def add_if_new(self, view: OrderView) -> bool:
        """Insert the order's row as ``view`` unless it exists; True if inserted (a row
        another transaction is inserting is waited for, then found)."""
        return bool(await driver_fetch(self.session, _ADD_IF_NEW, view.order_id,
                                       *_values(view), utc_now()))

    async def save(self, view: OrderView) -> None:
        await driver_execute(self.session, _SAVE, view.order_id, *_values(view), utc_now())

    async def get(self, order_id: str) -> StoredView | None:
        row = (await self.session.execute(
            select(order_view).where(order_view.c.order_id == order_id))).one_or_none()
        return None if row is None else _stored(row)

    async def page(self, *, customer_id: str | None, page: int, page_size: int,
                   owned_only: bool) -> Page:
        """Newest first (by when the order was placed, else by its latest event)."""
        where = []
        if customer_id is not None:
            where.append(order_view.c.customer_id == customer_id)
        elif owned_only:
            where.append(order_view.c.customer_id.is_not(None))
        total = (await self.session.execute(
            select(func.count()).select_from(order_view).where(*where))).scalar_one()
        rows = (await self.session.execute(
            select(order_view).where(*where)
            .order_by(func.coalesce(order_view.c.placed_at, order_view.c.last_event_at).desc(),
                      order_view.c.order_id.desc())
            .limit(page_size).offset((page - 1) * page_size))).all()
        return Page([_stored(r) for r in rows], total)

    async def clear(self, consumers: list[str]) -> None:
        """Empty the view and forget what these consumers handled (for a rebuild)."""
        await self.session.execute(text("TRUNCATE order_view"))
        await forget_consumers(self.session, consumers)

    async def count(self) -> int:
        return (await self.session.execute(
            select(func.count()).select_from(order_view))).scalar_one()
