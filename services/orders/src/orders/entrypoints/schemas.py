"""The orders service's public JSON shapes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from chassis.cards import CardNumber
from chassis.openapi import exactly_one_of
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from orders.domain.commands import OrderItem, PaymentChoice, PlaceOrder
from orders.domain.model import MAX_LINES, MAX_QUANTITY, Order, format_amount

IdRef = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product_id: IdRef
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class PaymentIn(BaseModel):
    """One of the two: a payment method of the customer's (preferred), or a card number,
    exchanged for a payment method before anything is stored or sent."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=exactly_one_of(
        "payment_method_id", "card_number"))
    payment_method_id: IdRef | None = Field(
        default=None, description="a payment method of the caller's, from POST "
                                  "/api/payments/payment-methods")
    card_number: CardNumber | None = None

    @model_validator(mode="after")
    def _one_of_them(self) -> PaymentIn:
        if (self.payment_method_id is None) == (self.card_number is None):
            raise ValueError("give either payment_method_id or card_number")
        return self


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_LINES)
    shipping_address_id: IdRef
    payment: PaymentIn

    @field_validator("items")
    @classmethod
    def _distinct_products(cls, items: list[ItemIn]) -> list[ItemIn]:
        ids = [i.product_id for i in items]
        if len(set(ids)) != len(ids):
            raise ValueError("each product_id may appear once")
        return items

    def command(self) -> PlaceOrder:
        return PlaceOrder(
            tuple(OrderItem(i.product_id, i.quantity) for i in self.items),
            self.shipping_address_id,
            PaymentChoice(payment_method_id=self.payment.payment_method_id,
                          card_number=self.payment.card_number))


class Money(BaseModel):
    amount: str
    currency: str


class PlacedOut(BaseModel):
    id: str
    status: str


class LineOut(BaseModel):
    product_id: str
    sku: str
    name: str
    quantity: int
    unit_price: Money


class OrderOut(BaseModel):
    id: str
    status: str
    items: list[LineOut]
    total: Money
    reason: str | None = None
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime


def _money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"amount": format_amount(amount), "currency": currency}


def order_json(o: Order) -> dict[str, Any]:
    return {"id": o.id, "status": o.status,
            "items": [{"product_id": li.product_id, "sku": li.sku, "name": li.name,
                       "quantity": li.quantity, "unit_price": _money(li.unit_price, o.currency)}
                      for li in o.lines],
            "total": _money(o.total, o.currency), "reason": o.reason,
            "cancel_requested": o.cancel_requested, "created_at": o.created_at.isoformat(),
            "updated_at": o.updated_at.isoformat()}
