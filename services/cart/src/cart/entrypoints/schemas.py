"""The cart service's public JSON shapes."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from chassis.cards import CardNumber
from chassis.openapi import exactly_one_of
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from cart.domain.commands import CheckOutCart, PaymentChoice
from cart.domain.model import MAX_QUANTITY, Cart, format_amount

IdRef = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quantity: int = Field(ge=1, le=MAX_QUANTITY, description=f"1-{MAX_QUANTITY}; replaces "
                                                             "the quantity in the cart")


class PaymentIn(BaseModel):
    """One of the two, passed on to orders: a payment method of the customer's (preferred),
    or a card number (orders exchanges it for one; the cart never stores it)."""

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


class CheckoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shipping_address_id: IdRef
    payment: PaymentIn

    def command(self) -> CheckOutCart:
        return CheckOutCart(self.shipping_address_id, PaymentChoice(
            payment_method_id=self.payment.payment_method_id,
            card_number=self.payment.card_number))


class Money(BaseModel):
    amount: str
    currency: str


class LineOut(BaseModel):
    product_id: str
    sku: str
    name: str
    quantity: int
    unit_price: Money
    subtotal: Money
    available: bool = Field(description="false once the catalog stopped selling it: not in "
                                        "the total, and checkout waits until it is removed")


class CartOut(BaseModel):
    items: list[LineOut]
    total: Money
    currency: str


class CheckoutOut(BaseModel):
    order_id: str
    status: str


def _money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"amount": format_amount(amount, currency), "currency": currency}


def cart_json(c: Cart) -> dict[str, Any]:
    return {"items": [{"product_id": li.product_id, "sku": li.sku, "name": li.name,
                       "quantity": li.quantity,
                       "unit_price": _money(li.unit_price, li.currency),
                       "subtotal": _money(li.subtotal, li.currency),
                       "available": li.available} for li in c.lines],
            "total": _money(c.total, c.currency), "currency": c.currency}
