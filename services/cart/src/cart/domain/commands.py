"""What a customer asks the cart to do, as plain values the use cases take (the entry point
builds them from its validated request). Plain Python, no framework."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PaymentChoice:
    """One of the two: a payment method of the customer's, or a card number that orders
    exchanges for one (the cart never stores it)."""

    payment_method_id: str | None = None
    card_number: str | None = field(default=None, repr=False)  # never in a log line

    def __post_init__(self) -> None:
        if (self.payment_method_id is None) == (self.card_number is None):
            raise ValueError("give either payment_method_id or card_number")

    def as_json(self) -> dict[str, str]:
        """Only the one given: what orders is sent, and what a checkout's fingerprint has
        hashed since the first checkout (so stored keys still match)."""
        if self.payment_method_id is not None:
            return {"payment_method_id": self.payment_method_id}
        assert self.card_number is not None
        return {"card_number": self.card_number}


@dataclass(frozen=True, slots=True)
class CheckOutCart:
    """Turn the caller's cart into an order shipped to ``shipping_address_id``."""

    shipping_address_id: str
    payment: PaymentChoice
