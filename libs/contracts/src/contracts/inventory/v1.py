"""Inventory's commands (stream INVENTORY_COMMANDS, a work queue) and events (INVENTORY_EVENTS).

Every command is idempotent per ``reservation_id``: sending it twice has the effect of once.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from contracts.base import Command, Event


class StockLine(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    sku: str
    quantity: int = Field(gt=0, le=10_000)


class _InventoryCommand(Command):
    owner: ClassVar[str] = "inventory"


class _InventoryEvent(Event):
    owner: ClassVar[str] = "inventory"


class ReserveStock(_InventoryCommand):
    """Reserve every line or none."""

    reservation_id: str
    order_id: str | None = None
    lines: list[StockLine] = Field(min_length=1, max_length=100)


class ReleaseStock(_InventoryCommand):
    reservation_id: str
    reason: str | None = None


class CommitReservation(_InventoryCommand):
    """The reserved units leave the warehouse: on hand and reserved both go down."""

    reservation_id: str


class RestockReservation(_InventoryCommand):
    """An order cancelled after approval, before its parcel left: the units its committed
    reservation took off the shelf are back on hand. Answered with StockReleased."""

    reservation_id: str
    reason: str | None = None


class StockReserved(_InventoryEvent):
    reservation_id: str
    order_id: str | None = None
    lines: list[StockLine]
    expires_at: str


class StockReservationFailed(_InventoryEvent):
    reservation_id: str
    order_id: str | None = None
    reason: str
    short_skus: list[str] = []


class StockReleased(_InventoryEvent):
    reservation_id: str
    order_id: str | None = None
    reason: str


class ReservationCommitted(_InventoryEvent):
    reservation_id: str
    order_id: str | None = None


class StockLow(_InventoryEvent):
    sku: str
    available: int
    threshold: int
