"""Translate shipping outcomes into integration events (contracts) staged in the outbox.

Staged in the caller's transaction: the event exists if and only if the change committed.
The correlation id is the order (the saga); the causation id is the command that led to the
event (None for the carrier's own moves).
"""

from __future__ import annotations

from chassis.messaging.outbox import stage
from contracts.shipping.v1 import (
    ShipmentCancellationRefused,
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentCreationFailed,
    ShipmentStatusChanged,
)
from sqlalchemy.ext.asyncio import AsyncSession

from shipping.domain.model import Shipment


async def shipment_created(session: AsyncSession, s: Shipment, *,
                           causation_id: str | None) -> None:
    assert s.customer_id is not None and s.tracking_number is not None
    await stage(session, ShipmentCreated(
        shipment_id=s.shipment_id, order_id=s.order_id, customer_id=s.customer_id,
        tracking_number=s.tracking_number),
        correlation_id=s.order_id, causation_id=causation_id)


async def creation_failed(session: AsyncSession, *, shipment_id: str, order_id: str,
                          reason: str, causation_id: str | None) -> None:
    await stage(session, ShipmentCreationFailed(
        shipment_id=shipment_id, order_id=order_id, reason=reason),
        correlation_id=order_id, causation_id=causation_id)


async def shipment_cancelled(session: AsyncSession, s: Shipment, *,
                             causation_id: str | None) -> None:
    await stage(session, ShipmentCancelled(shipment_id=s.shipment_id, order_id=s.order_id),
                correlation_id=s.order_id, causation_id=causation_id)


async def cancellation_refused(session: AsyncSession, s: Shipment, *,
                               causation_id: str | None) -> None:
    await stage(session, ShipmentCancellationRefused(
        shipment_id=s.shipment_id, order_id=s.order_id, status=s.status),
        correlation_id=s.order_id, causation_id=causation_id)


async def status_changed(session: AsyncSession, s: Shipment) -> None:
    assert s.customer_id is not None and s.tracking_number is not None
    await stage(session, ShipmentStatusChanged(
        shipment_id=s.shipment_id, order_id=s.order_id, customer_id=s.customer_id,
        status=s.status, tracking_number=s.tracking_number),
        correlation_id=s.order_id)
