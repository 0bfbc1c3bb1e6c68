"""Shipping's commands (SHIPPING_COMMANDS, a work queue) and events (SHIPPING_EVENTS).

Commands are idempotent per ``shipment_id`` (one shipment per order).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from contracts.base import Command, Event

Id = Field(min_length=1, max_length=200)


class ShippingAddress(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    name: str
    line1: str
    line2: str | None = None
    city: str
    postal_code: str
    country: str
    phone: str | None = None


class ShipmentLine(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    sku: str
    quantity: int = Field(gt=0)


class _ShippingCommand(Command):
    owner: ClassVar[str] = "shipping"


class _ShippingEvent(Event):
    owner: ClassVar[str] = "shipping"


class CreateShipment(_ShippingCommand):
    shipment_id: str = Id
    order_id: str = Id
    customer_id: str = Id
    address: ShippingAddress
    lines: list[ShipmentLine] = Field(min_length=1, max_length=100)


class CancelShipment(_ShippingCommand):
    """Compensation: only a shipment not yet dispatched can be cancelled."""

    shipment_id: str = Id
    order_id: str = Id
    reason: str | None = None


class ReleaseShipment(_ShippingCommand):
    """The order is approved (paid): hand the parcel to the carrier. Until then a created
    shipment waits in the warehouse, so a compensation can always cancel it."""

    shipment_id: str = Id
    order_id: str = Id


class ShipmentCreated(_ShippingEvent):
    shipment_id: str
    order_id: str
    customer_id: str
    tracking_number: str


class ShipmentCreationFailed(_ShippingEvent):
    shipment_id: str
    order_id: str
    reason: str


class ShipmentCancelled(_ShippingEvent):
    shipment_id: str
    order_id: str


class ShipmentCancellationRefused(_ShippingEvent):
    shipment_id: str
    order_id: str
    status: str  # already DISPATCHED or later


class ShipmentStatusChanged(_ShippingEvent):
    """The carrier moved it: DISPATCHED, IN_TRANSIT, DELIVERED."""

    shipment_id: str
    order_id: str
    customer_id: str
    status: str
    tracking_number: str
