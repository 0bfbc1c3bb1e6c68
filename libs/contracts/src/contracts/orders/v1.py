"""Events the orders service publishes (ORDERS_EVENTS) about an order's life."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from contracts.base import Event


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    product_id: str
    sku: str
    name: str
    quantity: int = Field(gt=0)
    unit_price: str


class _OrdersEvent(Event):
    owner: ClassVar[str] = "orders"


class OrderPlaced(_OrdersEvent):
    order_id: str
    customer_id: str
    customer_email: str | None = None
    lines: list[OrderLine]
    total: str
    currency: str


class OrderApproved(_OrdersEvent):
    """The saga completed: stock reserved, the payment captured, the shipment created.

    It also carries what those steps' own events told (ADR 0039), so a reader of the order's
    outcome need not follow them: ``amount_captured`` (the whole total; payments captures
    nothing less) and the shipment's ``tracking_number``. Both are ``None`` in events
    published before they existed.

    It is also the approval itself (ADR 0054): inventory commits the reservation named
    ``reservation_id`` and shipping releases the held shipment named ``shipment_id`` to the
    carrier when they read it, where orders used to send them ``CommitReservation`` and
    ``ReleaseShipment``. Both are ``None`` in events published before ADR 0054, whose orders
    still sent those commands: a reader then has nothing to do."""

    order_id: str
    customer_id: str
    customer_email: str | None = None
    total: str
    currency: str
    amount_captured: str | None = None
    tracking_number: str | None = None
    reservation_id: str | None = Field(default=None, min_length=1, max_length=200)
    shipment_id: str | None = Field(default=None, min_length=1, max_length=200)


class OrderRejected(_OrdersEvent):
    order_id: str
    customer_id: str
    customer_email: str | None = None
    reason: str


class OrderCancelled(_OrdersEvent):
    order_id: str
    customer_id: str
    customer_email: str | None = None
    reason: str | None = None
