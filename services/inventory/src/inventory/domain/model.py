"""Inventory domain: stock levels and reservations. Plain Python, no framework.

A reservation holds units of one or more SKUs for an order, all lines or none. Its life:

    (none) --reserve, fits--> RESERVED --commit--> COMMITTED   (units leave the warehouse)
    (none) --reserve, short-> FAILED                  \\--release/expire--> RELEASED
    (none) --release-------> RELEASED  (a tombstone: a late reserve for it is refused)
    COMMITTED --restock--> RESTOCKED  (its order was cancelled before the parcel left: the
                                       units are back on hand)

RESTOCKED, RELEASED and FAILED are terminal, and COMMITTED is for every command but restock:
every further command for the reservation is a no-op. That, with one row per reservation id,
makes each command idempotent per reservation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from chassis.clock import utc_now

RESERVED, COMMITTED, RELEASED, FAILED, RESTOCKED = (
    "reserved", "committed", "released", "failed", "restocked")
STATUSES = (RESERVED, COMMITTED, RELEASED, FAILED, RESTOCKED)
TERMINAL = frozenset({RELEASED, FAILED, RESTOCKED})

INSUFFICIENT_STOCK = "insufficient_stock"
EXPIRED = "expired"
RELEASED_BEFORE_RESERVE = "released_before_reserve"
# A reserve refused because its reservation was released (or tombstoned) already.
RESERVATION_RELEASED = "reservation_released"


MAX_UNITS = 1_000_000_000  # on hand never above this (the API's bound on a stock count)


class InventoryError(ValueError):
    """A rule of the inventory was broken."""


class BelowReserved(InventoryError):
    """On hand cannot drop below what is reserved: those units are promised to orders."""


@dataclass(frozen=True, slots=True)
class Policy:
    """The knobs of the inventory rules (set from the service's settings)."""

    reservation_ttl: timedelta = timedelta(seconds=900)
    low_stock_threshold: int = 5


@dataclass(slots=True)
class Stock:
    """One SKU's units: ``on_hand`` in the warehouse, ``reserved`` of them promised."""

    sku: str
    on_hand: int = 0
    reserved: int = 0

    def __post_init__(self) -> None:
        self._check()

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def fits(self, quantity: int) -> bool:
        return self.available >= quantity

    def reserve(self, quantity: int) -> None:
        if not self.fits(quantity):
            raise InventoryError(f"{self.sku}: {quantity} wanted, {self.available} available")
        self.reserved += quantity

    def release(self, quantity: int) -> None:
        if quantity > self.reserved:
            raise InventoryError(f"{self.sku}: cannot release {quantity} of {self.reserved}")
        self.reserved -= quantity

    def ship(self, quantity: int) -> None:
        """Reserved units leave the warehouse: both on hand and reserved go down."""
        self.release(quantity)
        self.on_hand -= quantity

    def put_back(self, quantity: int) -> None:
        """Shipped units that never left (their order was cancelled) return to the shelf."""
        if quantity <= 0:
            raise InventoryError(f"{self.sku}: a quantity must be positive")
        self.on_hand += quantity

    def set_on_hand(self, on_hand: int) -> None:
        if on_hand < 0:
            raise InventoryError("on hand cannot be negative")
        if on_hand < self.reserved:
            raise BelowReserved(f"{self.sku}: {self.reserved} units are reserved; on hand "
                                f"cannot be set to {on_hand}")
        self.on_hand = on_hand

    def adjust(self, delta: int) -> None:
        """Units moved in (+) or out (-) by someone who owns them elsewhere (the migration's
        stock transfers): only free units can leave, never reserved ones."""
        if delta == 0:
            raise InventoryError(f"{self.sku}: an adjustment moves at least one unit")
        if delta < 0 and -delta > self.available:
            raise BelowReserved(f"{self.sku}: {-delta} units wanted out, {self.available} "
                                f"free ({self.reserved} reserved)")
        if self.on_hand + delta > MAX_UNITS:
            raise InventoryError(f"{self.sku}: {self.on_hand} on hand + {delta} is above "
                                 f"{MAX_UNITS}")
        self.on_hand += delta

    def _check(self) -> None:
        if not 0 <= self.reserved <= self.on_hand:
            raise InventoryError(f"{self.sku}: need 0 <= reserved <= on_hand")


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    quantity: int


def merge_lines(lines: Iterable[tuple[str, int]]) -> tuple[Line, ...]:
    """One line per SKU (quantities of repeated SKUs added up), sorted by SKU.

    Sorted so that every transaction locks stock rows in the same order (no deadlocks)."""
    totals: dict[str, int] = {}
    for sku, quantity in lines:
        if quantity <= 0:
            raise InventoryError(f"{sku}: a quantity must be positive")
        totals[sku] = totals.get(sku, 0) + quantity
    if not totals:
        raise InventoryError("a reservation needs at least one line")
    return tuple(Line(sku, totals[sku]) for sku in sorted(totals))


@dataclass(slots=True)
class Reservation:
    reservation_id: str
    order_id: str | None
    status: str
    lines: tuple[Line, ...] = ()
    expires_at: datetime | None = None
    reason: str | None = None
    short_skus: tuple[str, ...] = ()
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)

    @classmethod
    def attempt(cls, reservation_id: str, order_id: str | None, lines: Iterable[tuple[str, int]],
                stock: Mapping[str, Stock], *, now: datetime, ttl: timedelta) -> Reservation:
        """Reserve every line or none. On success the ``stock`` objects are changed; a SKU
        missing from ``stock`` is unknown here and counts as short."""
        merged = merge_lines(lines)
        short = tuple(line.sku for line in merged
                      if line.sku not in stock or not stock[line.sku].fits(line.quantity))
        if short:
            return cls(reservation_id, order_id, FAILED, merged, reason=INSUFFICIENT_STOCK,
                       short_skus=short, created_at=now, updated_at=now)
        for line in merged:
            stock[line.sku].reserve(line.quantity)
        return cls(reservation_id, order_id, RESERVED, merged, expires_at=now + ttl,
                   created_at=now, updated_at=now)

    @classmethod
    def tombstone(cls, reservation_id: str, *, reason: str | None, now: datetime) -> Reservation:
        """A release that overtook its reserve: remembered so the late reserve is refused."""
        return cls(reservation_id, None, RELEASED, reason=reason or RELEASED_BEFORE_RESERVE,
                   created_at=now, updated_at=now)

    @property
    def skus(self) -> list[str]:
        return sorted(line.sku for line in self.lines)

    def is_expired(self, now: datetime) -> bool:
        return (self.status == RESERVED and self.expires_at is not None
                and self.expires_at <= now)

    def release(self, stock: Mapping[str, Stock], *, reason: str, now: datetime) -> bool:
        """Give the units back. False (and no change) unless the reservation holds units."""
        if self.status != RESERVED:
            return False
        for line in self.lines:
            _stock_for(stock, line).release(line.quantity)
        self.status, self.reason, self.updated_at = RELEASED, reason, now
        return True

    def commit(self, stock: Mapping[str, Stock], *, now: datetime) -> bool:
        """The reserved units are shipped. False (and no change) unless reserved."""
        if self.status != RESERVED:
            return False
        for line in self.lines:
            _stock_for(stock, line).ship(line.quantity)
        self.status, self.updated_at = COMMITTED, now
        return True

    def restock(self, stock: Mapping[str, Stock], *, reason: str, now: datetime) -> bool:
        """Undo a commit: the units go back on hand. False (and no change) unless committed."""
        if self.status != COMMITTED:
            return False
        for line in self.lines:
            _stock_for(stock, line).put_back(line.quantity)
        self.status, self.reason, self.updated_at = RESTOCKED, reason, now
        return True


def _stock_for(stock: Mapping[str, Stock], line: Line) -> Stock:
    try:
        return stock[line.sku]
    except KeyError:
        raise InventoryError(f"{line.sku}: reserved units but no stock row") from None


def fell_below(before: Mapping[str, int], after: Iterable[Stock], threshold: int) -> list[Stock]:
    """Stock whose availability crossed from >= threshold to below it (once per crossing,
    not on every change while low). ``before`` maps SKU to availability before the change;
    a SKU absent from it was just created and has not "dropped"."""
    return [s for s in after
            if s.sku in before and before[s.sku] >= threshold > s.available]
