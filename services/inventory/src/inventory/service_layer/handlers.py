"""Inventory use cases.

The message handlers (``reserve_stock``, ``release_stock``, ``commit_reservation``,
``restock_reservation``, ``expire_reservations``, ``ensure_stock``) are plain async functions
over the caller's session: the inbox consumer runs them in the transaction that records the
message as handled, tests call them directly. Each change and the events announcing it
commit together.

The HTTP use cases take a unit of work and open it themselves, like the catalog's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import structlog
from chassis.clock import utc_now
from chassis.db import UnitOfWork
from chassis.errors import Conflict, NotFound, Unprocessable
from chassis.messaging.consumer import dropped
from contracts.inventory.v1 import (
    CommitReservation,
    ReleaseStock,
    ReserveStock,
    RestockReservation,
)
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.adapters.repository import InventoryRepository
from inventory.domain.model import (
    COMMITTED,
    EXPIRED,
    FAILED,
    RELEASED,
    RESERVATION_RELEASED,
    RESERVED,
    BelowReserved,
    InventoryError,
    Policy,
    Reservation,
    Stock,
    fell_below,
)
from inventory.service_layer import events

log = structlog.get_logger("inventory")


async def _announce_low(session: AsyncSession, before: dict[str, int], after: Iterable[Stock],
                        policy: Policy, causation_id: str | None) -> None:
    low = fell_below(before, after, policy.low_stock_threshold)
    if low:
        await events.stock_low(session, low, threshold=policy.low_stock_threshold,
                               causation_id=causation_id)


# -- commands (from the inventory-commands consumer) -------------------------------------------

async def reserve_stock(session: AsyncSession, cmd: ReserveStock, policy: Policy, *,
                        now: datetime | None = None,
                        causation_id: str | None = None) -> Reservation:
    """Reserve every line or none; answer StockReserved or StockReservationFailed.

    A repeat for a known reservation changes nothing and re-announces its outcome; a
    reservation released before it was reserved (a tombstone) is refused."""
    now = now or utc_now()
    repo = InventoryRepository(session)
    await repo.lock_reservation_id(cmd.reservation_id)
    known = await repo.get_reservation(cmd.reservation_id, for_update=True)
    if known is not None:
        await _reannounce(session, known, causation_id)
        return known
    wanted = [(line.sku, line.quantity) for line in cmd.lines]
    held = await repo.lock_stock(sku for sku, _ in wanted)
    before = {sku: s.available for sku, s in held.items()}
    reservation = Reservation.attempt(cmd.reservation_id, cmd.order_id, wanted, held, now=now,
                                      ttl=policy.reservation_ttl)
    await repo.add_reservation(reservation)
    if reservation.status == RESERVED:
        await repo.save_stock(held.values())
        await events.stock_reserved(session, reservation, causation_id=causation_id)
        await _announce_low(session, before, held.values(), policy, causation_id)
        log.info("stock_reserved", reservation_id=reservation.reservation_id,
                 order_id=reservation.order_id, skus=reservation.skus)
    else:
        await events.reservation_failed(session, reservation, reason=reservation.reason or "",
                                        causation_id=causation_id)
        log.info("stock_reservation_failed", reservation_id=reservation.reservation_id,
                 order_id=reservation.order_id, short_skus=list(reservation.short_skus))
    return reservation


async def _reannounce(session: AsyncSession, known: Reservation,
                      causation_id: str | None) -> None:
    """Answer a repeated ReserveStock with the outcome it already had (or a refusal)."""
    if known.status == RESERVED:
        await events.stock_reserved(session, known, causation_id=causation_id)
    elif known.status == FAILED:
        await events.reservation_failed(session, known, reason=known.reason or "",
                                        causation_id=causation_id)
    elif known.status == RELEASED:
        # Released (or its tombstone written) before this reserve: holding stock now would
        # leak it, since the release that should free it has already been handled.
        await events.reservation_failed(session, known, reason=RESERVATION_RELEASED,
                                        causation_id=causation_id)
    log.info("reserve_repeated", reservation_id=known.reservation_id, status=known.status)


async def release_stock(session: AsyncSession, cmd: ReleaseStock, *,
                        now: datetime | None = None,
                        causation_id: str | None = None) -> Reservation:
    """Give reserved units back; answer StockReleased.

    Unknown reservation: write a released tombstone (so a late reserve is refused) and
    answer StockReleased. Already released, failed or committed: nothing to do."""
    now = now or utc_now()
    repo = InventoryRepository(session)
    await repo.lock_reservation_id(cmd.reservation_id)
    known = await repo.get_reservation(cmd.reservation_id, for_update=True)
    if known is None:
        tombstone = Reservation.tombstone(cmd.reservation_id, reason=cmd.reason, now=now)
        await repo.add_reservation(tombstone)
        await events.stock_released(session, tombstone, causation_id=causation_id)
        log.info("reservation_tombstoned", reservation_id=cmd.reservation_id)
        return tombstone
    if known.status != RESERVED:
        # Released already: a repeat. Committed: the order was approved, so a release now
        # (a late compensation) must not give its units back; the consumer warns.
        dropped("release_after_commit" if known.status == COMMITTED else "already_released",
                f"reservation {known.reservation_id} is {known.status}",
                expected=known.status != COMMITTED)
        return known
    held = await repo.lock_stock(known.skus)
    known.release(held, reason=cmd.reason or "released", now=now)
    await repo.save_stock(held.values())
    await repo.save_reservation(known)
    await events.stock_released(session, known, causation_id=causation_id)
    log.info("stock_released", reservation_id=known.reservation_id, reason=known.reason)
    return known


async def commit_reservation(session: AsyncSession, cmd: CommitReservation, *,
                             now: datetime | None = None,
                             causation_id: str | None = None) -> Reservation | None:
    """The reserved units ship: on hand and reserved both go down; answer
    ReservationCommitted. Committed already: nothing to do. Released, failed or unknown:
    nothing to do either, but it means the saga and the stock disagree, so warn."""
    now = now or utc_now()
    repo = InventoryRepository(session)
    await repo.lock_reservation_id(cmd.reservation_id)
    known = await repo.get_reservation(cmd.reservation_id, for_update=True)
    if known is None or known.status != RESERVED:
        repeat = known is not None and known.status == COMMITTED
        dropped("already_committed" if repeat else "commit_of_unreserved",
                f"reservation {cmd.reservation_id} is {known.status if known else 'unknown'}",
                expected=repeat)
        return known
    held = await repo.lock_stock(known.skus)
    known.commit(held, now=now)
    await repo.save_stock(held.values())
    await repo.save_reservation(known)
    await events.reservation_committed(session, known, causation_id=causation_id)
    log.info("reservation_committed", reservation_id=known.reservation_id)
    return known


async def restock_reservation(session: AsyncSession, cmd: RestockReservation, *,
                              now: datetime | None = None,
                              causation_id: str | None = None) -> Reservation | None:
    """A committed reservation's order was cancelled before dispatch: its units go back on
    hand; answer StockReleased. Restocked already: nothing to do. Still reserved (the commit
    has not arrived yet, or never will): released instead, which gives the units back too.
    Released, failed or unknown: nothing was taken, nothing to give back."""
    now = now or utc_now()
    repo = InventoryRepository(session)
    await repo.lock_reservation_id(cmd.reservation_id)
    known = await repo.get_reservation(cmd.reservation_id, for_update=True)
    reason = cmd.reason or "restocked"
    if known is None or known.status not in (COMMITTED, RESERVED):
        dropped("nothing_to_restock", f"reservation {cmd.reservation_id} is "
                f"{known.status if known else 'unknown'}")
        return known
    held = await repo.lock_stock(known.skus)
    if known.status == COMMITTED:
        known.restock(held, reason=reason, now=now)
    else:
        known.release(held, reason=reason, now=now)
    await repo.save_stock(held.values())
    await repo.save_reservation(known)
    await events.stock_released(session, known, causation_id=causation_id)
    log.info("stock_restocked", reservation_id=known.reservation_id, status=known.status,
             reason=reason)
    return known


async def expire_reservations(session: AsyncSession, *, now: datetime | None = None,
                              limit: int = 100) -> list[Reservation]:
    """Release live reservations past their deadline (StockReleased, reason "expired").

    Safe with several sweepers at once: each claims rows no one else holds."""
    now = now or utc_now()
    repo = InventoryRepository(session)
    due = await repo.claim_expired(now, limit)
    if not due:
        return []
    held = await repo.lock_stock(sku for r in due for sku in r.skus)
    for r in due:
        r.release(held, reason=EXPIRED, now=now)
        await repo.save_reservation(r)
        await events.stock_released(session, r, causation_id=None)
    await repo.save_stock(held.values())
    log.info("reservations_expired", count=len(due),
             reservation_ids=[r.reservation_id for r in due][:20])
    return due


async def sweep_expired(uow: UnitOfWork, *, now: datetime | None = None,
                        limit: int = 100) -> int:
    """One expiry round in its own transaction; the number of reservations released."""
    async with uow:
        released = await expire_reservations(uow.session, now=now, limit=limit)
        await uow.commit()
    return len(released)


# -- catalog events ----------------------------------------------------------------------------

async def ensure_stock(session: AsyncSession, sku: str) -> bool:
    """A new product gets a stock row with nothing on hand (once). True if created."""
    created = await InventoryRepository(session).create_stock(sku)
    if created:
        log.info("stock_created", sku=sku)
    else:
        log.info("stock_exists", sku=sku)
    return created


# -- HTTP use cases ----------------------------------------------------------------------------

async def get_stock(uow: UnitOfWork, sku: str) -> Stock:
    async with uow:
        found = await InventoryRepository(uow.session).get_stock(sku)
    if found is None:
        raise NotFound(f"no stock for SKU {sku}")
    return found


async def list_stock(uow: UnitOfWork, skus: list[str]) -> list[Stock]:
    """The known SKUs among ``skus``, in the order asked (unknown ones are left out)."""
    async with uow:
        found = await InventoryRepository(uow.session).stock_for(skus)
    return [found[sku] for sku in dict.fromkeys(skus) if sku in found]


async def set_on_hand(uow: UnitOfWork, sku: str, on_hand: int, policy: Policy) -> Stock:
    """Set the units on hand (a stock count), creating the SKU's row if needed.

    Refused with 409 below what is reserved: those units are promised to orders."""
    async with uow:
        repo = InventoryRepository(uow.session)
        await repo.create_stock(sku)
        held = await repo.lock_stock([sku])
        current = held[sku]
        before = {sku: current.available}
        try:
            current.set_on_hand(on_hand)
        except BelowReserved as exc:
            raise Conflict(str(exc), title="Below reserved", reserved=current.reserved) from exc
        except InventoryError as exc:
            raise Unprocessable(str(exc)) from exc
        await repo.save_stock([current])
        await _announce_low(uow.session, before, [current], policy, causation_id=None)
        await uow.commit()
    log.info("on_hand_set", sku=sku, on_hand=on_hand)
    return current


@dataclass(frozen=True, slots=True)
class Adjusted:
    stock: Stock  # as the adjustment left it (a repeat: as the first one left it)
    delta: int
    repeated: bool


async def adjust_stock(uow: UnitOfWork, sku: str, adjustment_id: str, delta: int,
                       policy: Policy) -> Adjusted:
    """Move units in (+) or out (-) once per ``adjustment_id`` (the migration's stock
    transfers, ADR 0034). Out only of free units: 409 when fewer are free, and the refusal
    is kept, so a repeat of the id gets the same answer, applied or refused; an id reused
    for another SKU or delta is a 409 too."""
    async with uow:
        repo = InventoryRepository(uow.session)
        await repo.lock_adjustment_id(adjustment_id)
        known = await repo.get_adjustment(adjustment_id)
        if known is not None:
            if known.sku != sku or known.delta != delta:
                raise Conflict(f"adjustment {adjustment_id} was {known.delta:+d} of "
                               f"{known.sku}", title="Adjustment id reused")
            then = Stock(sku, known.on_hand, known.reserved)
            if known.outcome == "refused":
                raise Conflict(f"{sku}: adjustment {adjustment_id} was refused: not enough "
                               "free units", title="Not enough free units",
                               available=then.available, repeated=True)
            return Adjusted(then, delta, repeated=True)
        if delta > 0:
            await repo.create_stock(sku)
        held = await repo.lock_stock([sku])
        current = held.get(sku) or Stock(sku)
        before = {sku: current.available} if sku in held else {}
        try:
            current.adjust(delta)
        except BelowReserved as exc:
            await repo.add_adjustment(adjustment_id, sku, delta, "refused", current)
            await uow.commit()
            raise Conflict(str(exc), title="Not enough free units",
                           available=current.available) from exc
        except InventoryError as exc:
            raise Unprocessable(str(exc)) from exc
        await repo.save_stock([current])
        await repo.add_adjustment(adjustment_id, sku, delta, "applied", current)
        await _announce_low(uow.session, before, [current], policy, causation_id=None)
        await uow.commit()
    log.info("stock_adjusted", sku=sku, adjustment_id=adjustment_id, delta=delta,
             on_hand=current.on_hand)
    return Adjusted(current, delta, repeated=False)


async def get_reservation(uow: UnitOfWork, reservation_id: str) -> Reservation:
    async with uow:
        found = await InventoryRepository(uow.session).get_reservation(reservation_id)
    if found is None:
        raise NotFound(f"no reservation {reservation_id}")
    return found
