"""The order_history service's public JSON shapes. Money is {"amount": "<decimal string>",
"currency": "KRW"}; a status or amount no event has told yet is null."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, StringConstraints

from order_history.adapters.repository import StoredView

IdRef = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class MoneyOut(BaseModel):
    amount: str
    currency: str | None


class LineOut(BaseModel):
    product_id: str
    sku: str
    name: str
    quantity: int
    unit_price: str


class OrderViewOut(BaseModel):
    id: str
    customer_id: str | None
    status: str | None
    total: MoneyOut | None
    items: list[LineOut]
    reason: str | None
    payment_status: str | None
    amount_captured: MoneyOut | None
    amount_refunded: MoneyOut | None
    shipment_status: str | None
    tracking_number: str | None
    placed_at: datetime | None
    updated_at: datetime
    last_event_at: datetime | None


class OrderViewPageOut(BaseModel):
    items: list[OrderViewOut]
    total: int
    page: int
    page_size: int


def _money(amount: Decimal | None, currency: str | None) -> dict[str, Any] | None:
    # Fixed-point: a Decimal read back may print as "3E+4".
    return None if amount is None else {"amount": format(amount, "f"), "currency": currency}


def _at(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def order_json(stored: StoredView) -> dict[str, Any]:
    v = stored.view
    return {"id": v.order_id, "customer_id": v.customer_id, "status": v.status,
            "total": _money(v.total, v.currency), "items": v.lines or [], "reason": v.reason,
            "payment_status": v.payment_status,
            "amount_captured": _money(v.amount_captured, v.currency),
            "amount_refunded": _money(v.amount_refunded, v.currency),
            "shipment_status": v.shipment_status, "tracking_number": v.tracking_number,
            "placed_at": _at(v.placed_at), "updated_at": stored.updated_at.isoformat(),
            "last_event_at": _at(v.last_event_at)}
