"""Shipping domain: shipments and the carrier's timetable. Plain Python, no framework.

A shipment is created for an order (one per ``shipment_id``) and moved along by the carrier:

    (none) --create--> CREATED --release, then carrier--> DISPATCHED --carrier--> IN_TRANSIT
                          \\--cancel--> CANCELLED                          --> DELIVERED
    (none) --cancel--> CANCELLED  (a tombstone: a late create for it is refused)

A created shipment waits in the warehouse until it is released (its order is approved, so
paid); only then does the carrier's clock start. Only a CREATED shipment can be cancelled:
once dispatched the parcel has left. Holding it until release means the order saga's
compensation can always cancel it, however late its reply comes. DELIVERED and
CANCELLED are terminal. One row per shipment id makes every command idempotent per shipment.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from chassis.clock import utc_now

CREATED, DISPATCHED, IN_TRANSIT, DELIVERED, CANCELLED = (
    "CREATED", "DISPATCHED", "IN_TRANSIT", "DELIVERED", "CANCELLED")
STATUSES = (CREATED, DISPATCHED, IN_TRANSIT, DELIVERED, CANCELLED)
TERMINAL = frozenset({DELIVERED, CANCELLED})
# The carrier's route: each status and the one it moves to next.
NEXT_STATUS = {CREATED: DISPATCHED, DISPATCHED: IN_TRANSIT, IN_TRANSIT: DELIVERED}

# ShipmentCreationFailed reasons.
INVALID_ADDRESS = "invalid_address"
INVALID_LINES = "invalid_lines"
SHIPMENT_CANCELLED = "cancelled"

MAX_FIELD_LENGTH = 200
MAX_SKU_LENGTH = 64
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
_TRACKING_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read over the phone
TRACKING_PREFIX = "MS"
TRACKING_LENGTH = 14  # prefix + 12 symbols: 32^12 ~ 10^18 numbers


class ShippingError(ValueError):
    """A rule of shipping was broken; ``reason`` is the machine-readable cause."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def new_tracking_number() -> str:
    body = "".join(secrets.choice(_TRACKING_ALPHABET)
                   for _ in range(TRACKING_LENGTH - len(TRACKING_PREFIX)))
    return TRACKING_PREFIX + body


@dataclass(frozen=True, slots=True)
class Address:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str | None = None
    phone: str | None = None

    @classmethod
    def checked(cls, *, name: str | None, line1: str | None, city: str | None,
                postal_code: str | None, country: str | None, line2: str | None = None,
                phone: str | None = None) -> Address:
        """A deliverable address (fields stripped, country upper-cased) or ShippingError."""
        required = {"name": name, "line1": line1, "city": city, "postal_code": postal_code,
                    "country": country}
        cleaned: dict[str, str] = {}
        for key, value in required.items():
            value = (value or "").strip()
            if not value:
                raise ShippingError(INVALID_ADDRESS, f"address: {key} is missing")
            if len(value) > MAX_FIELD_LENGTH:
                raise ShippingError(INVALID_ADDRESS, f"address: {key} is too long")
            cleaned[key] = value
        if not _COUNTRY.match(cleaned["country"]):
            raise ShippingError(INVALID_ADDRESS,
                                "address: country must be a 2-letter ISO 3166 code")
        optional = {"line2": line2, "phone": phone}
        for key, value in optional.items():
            if value is not None and len(value) > MAX_FIELD_LENGTH:
                raise ShippingError(INVALID_ADDRESS, f"address: {key} is too long")
        return cls(name=cleaned["name"], line1=cleaned["line1"], city=cleaned["city"],
                   postal_code=cleaned["postal_code"], country=cleaned["country"].upper(),
                   line2=(line2 or "").strip() or None, phone=(phone or "").strip() or None)


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    quantity: int


def merge_lines(lines: Iterable[tuple[str, int]]) -> tuple[Line, ...]:
    """One line per SKU (repeats added up), sorted by SKU; ShippingError if unusable."""
    totals: dict[str, int] = {}
    for sku, quantity in lines:
        if not sku or len(sku) > MAX_SKU_LENGTH:
            raise ShippingError(INVALID_LINES, f"a SKU must be 1-{MAX_SKU_LENGTH} chars")
        if quantity <= 0:
            raise ShippingError(INVALID_LINES, f"{sku}: a quantity must be positive")
        totals[sku] = totals.get(sku, 0) + quantity
    if not totals:
        raise ShippingError(INVALID_LINES, "a shipment needs at least one line")
    return tuple(Line(sku, totals[sku]) for sku in sorted(totals))


@dataclass(frozen=True, slots=True)
class Timetable:
    """How long the simulated carrier leaves a shipment in each status before moving it on."""

    to_dispatched: timedelta = timedelta(seconds=30)
    to_in_transit: timedelta = timedelta(seconds=60)
    to_delivered: timedelta = timedelta(seconds=120)

    def wait_in(self, status: str) -> timedelta | None:
        """The time spent in ``status`` before the next move; None when none comes."""
        return {CREATED: self.to_dispatched, DISPATCHED: self.to_in_transit,
                IN_TRANSIT: self.to_delivered}.get(status)


@dataclass(frozen=True, slots=True)
class Step:
    status: str
    at: datetime


@dataclass(slots=True)
class Shipment:
    shipment_id: str
    order_id: str
    status: str
    customer_id: str | None = None  # None only on a tombstone
    address: Address | None = None
    lines: tuple[Line, ...] = ()
    tracking_number: str | None = None
    next_move_at: datetime | None = None
    reason: str | None = None  # why it was cancelled
    history: list[Step] = field(default_factory=list)
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)

    @classmethod
    def create(cls, shipment_id: str, order_id: str, customer_id: str, address: Address,
               lines: Iterable[tuple[str, int]], *, now: datetime, timetable: Timetable,
               tracking_number: Callable[[], str] = new_tracking_number) -> Shipment:
        merged = merge_lines(lines)
        # No next move: held until released (``next_move_at`` None while CREATED).
        return cls(shipment_id, order_id, CREATED, customer_id=customer_id, address=address,
                   lines=merged, tracking_number=tracking_number(),
                   history=[Step(CREATED, now)], created_at=now, updated_at=now)

    @classmethod
    def tombstone(cls, shipment_id: str, order_id: str, *, reason: str | None,
                  now: datetime) -> Shipment:
        """A cancel that overtook its create: remembered so the late create is refused."""
        return cls(shipment_id, order_id, CANCELLED, reason=reason,
                   history=[Step(CANCELLED, now)], created_at=now, updated_at=now)

    @property
    def is_tombstone(self) -> bool:
        return self.customer_id is None

    @property
    def cancellable(self) -> bool:
        return self.status == CREATED

    @property
    def released(self) -> bool:
        return self.status != CREATED or self.next_move_at is not None

    def release(self, *, now: datetime, timetable: Timetable) -> bool:
        """Hand a held CREATED shipment to the carrier: dispatched after ``to_dispatched``.
        False (and no change) when released already, cancelled or a tombstone."""
        if self.status != CREATED or self.next_move_at is not None:
            return False
        self.next_move_at, self.updated_at = now + timetable.to_dispatched, now
        return True

    def cancel(self, *, reason: str | None, now: datetime) -> bool:
        """CREATED -> CANCELLED. False (and no change) in any other status."""
        if not self.cancellable:
            return False
        self._move(CANCELLED, now, None)
        self.reason = reason
        return True

    def advance(self, *, now: datetime, timetable: Timetable) -> str | None:
        """The carrier's next move; the new status, or None (no change) when none is left."""
        target = NEXT_STATUS.get(self.status)
        if target is None:
            return None
        wait = timetable.wait_in(target)
        self._move(target, now, now + wait if wait is not None else None)
        return target

    def is_due(self, now: datetime) -> bool:
        return (self.status in NEXT_STATUS and self.next_move_at is not None
                and self.next_move_at <= now)

    def _move(self, status: str, now: datetime, next_move_at: datetime | None) -> None:
        self.status, self.updated_at, self.next_move_at = status, now, next_move_at
        self.history.append(Step(status, now))
