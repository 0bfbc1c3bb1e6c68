"""Shipping use cases.

The message handlers (``create_shipment``, ``cancel_shipment``) and the carrier's step
(``advance_due``) are plain async functions over the caller's session: the inbox consumer runs
them in the transaction that records the message as handled, tests call them directly. Each
change and the events announcing it commit together.

The HTTP use cases take a unit of work and open it themselves.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from chassis.auth import Principal
from chassis.clock import utc_now
from chassis.db import UnitOfWork
from chassis.errors import NotFound
from chassis.messaging.consumer import UnmatchedMessage
from contracts.shipping.v1 import CancelShipment, CreateShipment, ReleaseShipment
from sqlalchemy.ext.asyncio import AsyncSession

from shipping.adapters.repository import ShippingRepository
from shipping.domain.model import (
    CANCELLED,
    SHIPMENT_CANCELLED,
    Address,
    Shipment,
    ShippingError,
    Timetable,
)
from shipping.service_layer import events

log = structlog.get_logger("shipping")


# -- commands (from the shipping-commands consumer) --------------------------------------------

async def create_shipment(session: AsyncSession, cmd: CreateShipment, timetable: Timetable, *,
                          now: datetime | None = None,
                          causation_id: str | None = None) -> Shipment | None:
    """Create the shipment and answer ShipmentCreated, or ShipmentCreationFailed when the
    address or lines cannot be shipped (nothing is stored: a repeat fails the same way).

    A repeat for a live shipment changes nothing and announces the same ShipmentCreated; a
    shipment cancelled already (or tombstoned by a cancel that came first) is refused."""
    now = now or utc_now()
    repo = ShippingRepository(session)
    await repo.lock_shipment_id(cmd.shipment_id)
    known = await repo.get(cmd.shipment_id, for_update=True)
    if known is not None:
        if known.order_id != cmd.order_id:
            log.warning("create_for_other_order", shipment_id=known.shipment_id,
                        order_id=known.order_id, command_order_id=cmd.order_id)
        if known.status == CANCELLED:
            await events.creation_failed(session, shipment_id=known.shipment_id,
                                         order_id=known.order_id, reason=SHIPMENT_CANCELLED,
                                         causation_id=causation_id)
        else:
            await events.shipment_created(session, known, causation_id=causation_id)
        log.info("create_repeated", shipment_id=known.shipment_id, status=known.status)
        return known
    a = cmd.address
    try:
        address = Address.checked(name=a.name, line1=a.line1, line2=a.line2, city=a.city,
                                  postal_code=a.postal_code, country=a.country, phone=a.phone)
        shipment = Shipment.create(cmd.shipment_id, cmd.order_id, cmd.customer_id, address,
                                   [(line.sku, line.quantity) for line in cmd.lines],
                                   now=now, timetable=timetable)
    except ShippingError as exc:
        await events.creation_failed(session, shipment_id=cmd.shipment_id,
                                     order_id=cmd.order_id, reason=exc.reason,
                                     causation_id=causation_id)
        log.info("shipment_creation_failed", shipment_id=cmd.shipment_id,
                 order_id=cmd.order_id, reason=exc.reason, detail=str(exc))
        return None
    await repo.add(shipment)
    await events.shipment_created(session, shipment, causation_id=causation_id)
    log.info("shipment_created", shipment_id=shipment.shipment_id, order_id=shipment.order_id,
             tracking_number=shipment.tracking_number)
    return shipment


async def cancel_shipment(session: AsyncSession, cmd: CancelShipment, *,
                          now: datetime | None = None,
                          causation_id: str | None = None) -> Shipment:
    """Cancel a shipment not yet dispatched; answer ShipmentCancelled, or
    ShipmentCancellationRefused(status) once the carrier has it.

    Cancelled already: ShipmentCancelled again. Unknown: a tombstone is written (so the
    create, if it comes late, is refused) and ShipmentCancelled answered."""
    now = now or utc_now()
    repo = ShippingRepository(session)
    await repo.lock_shipment_id(cmd.shipment_id)
    known = await repo.get(cmd.shipment_id, for_update=True)
    if known is None:
        tombstone = Shipment.tombstone(cmd.shipment_id, cmd.order_id, reason=cmd.reason,
                                       now=now)
        await repo.add(tombstone)
        await events.shipment_cancelled(session, tombstone, causation_id=causation_id)
        log.info("shipment_tombstoned", shipment_id=cmd.shipment_id, order_id=cmd.order_id)
        return tombstone
    if known.status == CANCELLED:
        await events.shipment_cancelled(session, known, causation_id=causation_id)
        log.info("cancel_repeated", shipment_id=known.shipment_id)
        return known
    if known.cancel(reason=cmd.reason, now=now):
        await repo.save(known)
        await events.shipment_cancelled(session, known, causation_id=causation_id)
        log.info("shipment_cancelled", shipment_id=known.shipment_id, reason=cmd.reason)
        return known
    await events.cancellation_refused(session, known, causation_id=causation_id)
    log.info("shipment_cancellation_refused", shipment_id=known.shipment_id,
             status=known.status)
    return known


async def release_shipment(session: AsyncSession, cmd: ReleaseShipment, timetable: Timetable,
                           *, now: datetime | None = None) -> Shipment | None:
    """The order is approved: the carrier may take the parcel (its clock starts now).
    Released already or cancelled: nothing to do. Unknown (or only a tombstone): the orders
    service approved an order whose shipment shipping does not have -- no parcel would ever
    leave, so the command is dead-lettered (``UnmatchedMessage``) for an operator."""
    now = now or utc_now()
    repo = ShippingRepository(session)
    await repo.lock_shipment_id(cmd.shipment_id)
    known = await repo.get(cmd.shipment_id, for_update=True)
    if known is None or known.is_tombstone:
        what = "was cancelled before it was created" if known else "does not exist"
        raise UnmatchedMessage("unknown_shipment", f"release of shipment {cmd.shipment_id!r} "
                               f"(order {cmd.order_id}), which {what}")
    if known.release(now=now, timetable=timetable):
        await repo.save(known)
        log.info("shipment_released", shipment_id=known.shipment_id,
                 dispatch_at=known.next_move_at.isoformat() if known.next_move_at else None)
    return known


# -- the simulated carrier ---------------------------------------------------------------------

async def advance_due(session: AsyncSession, timetable: Timetable, *,
                      now: datetime | None = None, limit: int = 100) -> list[Shipment]:
    """Move every due shipment one step along its route (ShipmentStatusChanged each).

    Safe with several carriers at once: each claims rows no one else holds."""
    now = now or utc_now()
    repo = ShippingRepository(session)
    due = await repo.claim_due(now, limit)
    moved = []
    for s in due:
        if s.advance(now=now, timetable=timetable) is None:  # a row the index let through
            continue
        await repo.save(s)
        await events.status_changed(session, s)
        moved.append(s)
    if moved:
        log.info("shipments_moved", count=len(moved),
                 moves=[f"{s.shipment_id}:{s.status}" for s in moved][:20])
    return moved


async def sweep_carrier(uow: UnitOfWork, timetable: Timetable, *,
                        now: datetime | None = None, limit: int = 100) -> int:
    """One carrier round in its own transaction; the number of shipments moved."""
    async with uow:
        moved = await advance_due(uow.session, timetable, now=now, limit=limit)
        await uow.commit()
    return len(moved)


# -- HTTP use cases ----------------------------------------------------------------------------

async def list_shipments(uow: UnitOfWork, principal: Principal, *, order_id: str | None,
                         limit: int) -> list[Shipment]:
    """An admin sees every shipment; anyone else only their own."""
    customer = None if principal.is_admin else principal.subject
    async with uow:
        return await ShippingRepository(uow.session).listing(
            customer_id=customer, order_id=order_id, limit=limit)


async def get_shipment(uow: UnitOfWork, principal: Principal, shipment_id: str) -> Shipment:
    """Another customer's shipment is a 404, not a 403: its existence is not told either."""
    async with uow:
        found = await ShippingRepository(uow.session).get(shipment_id)
    if (found is None or found.customer_id is None
            or not principal.can_act_for(found.customer_id)):
        raise NotFound(f"no shipment {shipment_id}")
    return found


async def track(uow: UnitOfWork, tracking_number: str) -> Shipment:
    async with uow:
        found = await ShippingRepository(uow.session).by_tracking_number(tracking_number)
    if found is None:
        raise NotFound(f"no shipment with tracking number {tracking_number}")
    return found
