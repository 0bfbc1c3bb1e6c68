"""Translate inventory outcomes into integration events (contracts) staged in the outbox.

Staged in the caller's transaction: the event exists if and only if the change committed.
The correlation id is the order (the saga) when known, else the reservation; the causation id
is the command that led to the event.
"""

from __future__ import annotations

from chassis.messaging.outbox import stage
from contracts.inventory.v1 import (
    ReservationCommitted,
    StockLine,
    StockLow,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.domain.model import Reservation, Stock


def _correlation(r: Reservation) -> str:
    return r.order_id or r.reservation_id


async def stock_reserved(session: AsyncSession, r: Reservation, *,
                         causation_id: str | None) -> None:
    assert r.expires_at is not None
    await stage(session, StockReserved(
        reservation_id=r.reservation_id, order_id=r.order_id,
        lines=[StockLine(sku=line.sku, quantity=line.quantity) for line in r.lines],
        expires_at=r.expires_at.isoformat()),
        correlation_id=_correlation(r), causation_id=causation_id)


async def reservation_failed(session: AsyncSession, r: Reservation, *, reason: str,
                             causation_id: str | None) -> None:
    await stage(session, StockReservationFailed(
        reservation_id=r.reservation_id, order_id=r.order_id, reason=reason,
        short_skus=list(r.short_skus)),
        correlation_id=_correlation(r), causation_id=causation_id)


async def stock_released(session: AsyncSession, r: Reservation, *,
                         causation_id: str | None) -> None:
    await stage(session, StockReleased(
        reservation_id=r.reservation_id, order_id=r.order_id, reason=r.reason or "released"),
        correlation_id=_correlation(r), causation_id=causation_id)


async def reservation_committed(session: AsyncSession, r: Reservation, *,
                                causation_id: str | None) -> None:
    await stage(session, ReservationCommitted(
        reservation_id=r.reservation_id, order_id=r.order_id),
        correlation_id=_correlation(r), causation_id=causation_id)


async def stock_low(session: AsyncSession, items: list[Stock], *, threshold: int,
                    causation_id: str | None) -> None:
    for s in items:
        await stage(session, StockLow(sku=s.sku, available=s.available, threshold=threshold),
                    correlation_id=s.sku, causation_id=causation_id)
