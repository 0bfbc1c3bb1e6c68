"""What a customer asks orders to do, as plain values the use cases take (the entry point
builds them from its validated request). Plain Python, no framework."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class OrderItem:
    product_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class PaymentChoice:
    """One of the two: a payment method of the customer's (preferred), or a card number,
    exchanged for a payment method before anything is stored or sent."""

    payment_method_id: str | None = None
    card_number: str | None = field(default=None, repr=False)  # never in a log line

    def __post_init__(self) -> None:
        if (self.payment_method_id is None) == (self.card_number is None):
            raise ValueError("give either payment_method_id or card_number")


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """Order ``items`` (each product once), shipped to ``shipping_address_id``."""

    items: tuple[OrderItem, ...]
    shipping_address_id: str
    payment: PaymentChoice
