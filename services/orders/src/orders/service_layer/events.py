"""Translate order outcomes into integration events (contracts) staged in the outbox.

Staged in the caller's transaction: the event exists if and only if the change committed.
The correlation id is the order id (which is also the saga id).
"""

from __future__ import annotations

from chassis.messaging.outbox import stage
from contracts.orders.v1 import OrderApproved, OrderCancelled, OrderLine, OrderPlaced, OrderRejected
from sqlalchemy.ext.asyncio import AsyncSession

from orders.domain.model import Order, format_amount


async def order_placed(session: AsyncSession, o: Order, *, causation_id: str | None) -> None:
    await stage(session, OrderPlaced(
        order_id=o.id, customer_id=o.customer_id, customer_email=o.customer_email,
        lines=[OrderLine(product_id=li.product_id, sku=li.sku, name=li.name,
                       quantity=li.quantity, unit_price=format_amount(li.unit_price))
               for li in o.lines],
        total=format_amount(o.total), currency=o.currency),
        correlation_id=o.id, causation_id=causation_id)


async def order_approved(session: AsyncSession, o: Order, *, tracking_number: str | None,
                         reservation_id: str, shipment_id: str) -> None:
    """The saga's own steps captured the whole total and created the shipment: the event
    says so, and the read model needs no step's event to show it (ADR 0039). It names the
    reservation inventory commits and the shipment shipping releases (ADR 0054)."""
    await stage(session, OrderApproved(
        order_id=o.id, customer_id=o.customer_id, customer_email=o.customer_email,
        total=format_amount(o.total), currency=o.currency,
        amount_captured=format_amount(o.total), tracking_number=tracking_number,
        reservation_id=reservation_id, shipment_id=shipment_id),
        correlation_id=o.id)


async def order_rejected(session: AsyncSession, o: Order) -> None:
    await stage(session, OrderRejected(
        order_id=o.id, customer_id=o.customer_id, customer_email=o.customer_email,
        reason=o.reason or "unknown"), correlation_id=o.id)


async def order_cancelled(session: AsyncSession, o: Order) -> None:
    await stage(session, OrderCancelled(
        order_id=o.id, customer_id=o.customer_id, customer_email=o.customer_email,
        reason=o.reason), correlation_id=o.id)
