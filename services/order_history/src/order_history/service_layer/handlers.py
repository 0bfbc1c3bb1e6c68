"""order_history use cases.

``apply_change`` is the one message handler: the inbox consumers run it in the transaction
that records the message as handled (so an event takes effect once), the rebuild runs it
through the same consumers, tests call it directly. The HTTP use cases take a unit of work
and open it themselves.
"""

from __future__ import annotations

import structlog
from chassis.auth import Principal
from chassis.db import UnitOfWork
from chassis.errors import NotFound
from sqlalchemy.ext.asyncio import AsyncSession

from order_history.adapters.repository import OrderViewRepository, Page, StoredView
from order_history.domain.model import Change, OrderView, merge

log = structlog.get_logger("order_history")


async def apply_change(session: AsyncSession, change: Change) -> OrderView:
    repo = OrderViewRepository(session)
    # The placement, an order's usual first event, finds no row: it writes the whole row at
    # once, as the lock's new row (the order's id and when its first event happened) merged
    # with it. A later event finds the row: asking first would cost it a round trip.
    if change.placed:
        first = merge(OrderView(change.order_id, last_event_at=change.occurred_at), change)
        if await repo.add_if_new(first):
            return first
    current = await repo.lock(change.order_id, change.occurred_at)
    if current.customer_id and change.customer_id and current.customer_id != change.customer_id:
        log.warning("customer_mismatch", order_id=change.order_id,
                    kept=current.customer_id, ignored=change.customer_id)
    merged = merge(current, change)
    if merged != current:
        await repo.save(merged)
    return merged


async def list_orders(uow: UnitOfWork, principal: Principal, *, customer_id: str | None,
                      page: int, page_size: int) -> Page:
    """A customer sees only their own orders (``customer_id`` is ignored for them); an admin
    sees every row, or one customer's."""
    if not principal.is_admin:
        customer_id = principal.subject
    async with uow:
        return await OrderViewRepository(uow.session).page(
            customer_id=customer_id, page=page, page_size=page_size,
            owned_only=not principal.is_admin)


async def get_order(uow: UnitOfWork, principal: Principal, order_id: str) -> StoredView:
    """Another customer's order, or one whose customer is not known yet, is a 404 (not a
    403): its existence is not told either."""
    async with uow:
        found = await OrderViewRepository(uow.session).get(order_id)
    if found is None:
        raise NotFound(f"no order {order_id}")
    owner = found.view.customer_id
    if not principal.is_admin and (owner is None or owner != principal.subject):
        raise NotFound(f"no order {order_id}")
    return found
