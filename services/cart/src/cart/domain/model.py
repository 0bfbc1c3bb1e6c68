"""Cart domain: a customer's cart, its lines and the rules of changing and checking it out.
Plain Python, no framework.

A cart belongs to one customer (the token's subject) and holds at most ``MAX_LINES``
products, each 1-``MAX_QUANTITY`` times. A line keeps the catalog's name, SKU and unit price
as last seen (on add, or from a catalog event); a discontinued product stays in the cart,
marked unavailable, out of the total, and blocks checkout until it is removed. The order's
prices are fixed by the orders service at checkout (it asks the catalog again), so the
cart's prices are what the customer is shown, not what they are charged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import orjson

from cart.domain.commands import CheckOutCart

CURRENCY = "KRW"
MAX_QUANTITY = 100
MAX_LINES = 50  # what one order may hold
MAX_AMOUNT = Decimal("9999999999999999.99")  # numeric(18, 2)


class CartError(ValueError):
    """A rule of the cart was broken; ``reason`` is the machine-readable cause."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CartLine:
    product_id: str
    sku: str
    name: str
    quantity: int
    unit_price: Decimal
    currency: str = CURRENCY
    available: bool = True

    @property
    def subtotal(self) -> Decimal:
        return self.unit_price * self.quantity


@dataclass(frozen=True, slots=True)
class Cart:
    customer_id: str
    lines: tuple[CartLine, ...] = ()
    currency: str = CURRENCY

    @property
    def total(self) -> Decimal:
        """What the available lines cost; an unavailable line cannot be bought."""
        return sum((li.subtotal for li in self.lines if li.available), Decimal(0))

    def holds(self, product_id: str) -> bool:
        return any(li.product_id == product_id for li in self.lines)

    def check_room_for(self, product_id: str) -> None:
        """Adding ``product_id`` must not grow the cart past what one order may hold."""
        if not self.holds(product_id) and len(self.lines) >= MAX_LINES:
            raise CartError("cart_full", f"a cart holds at most {MAX_LINES} products")

    def order_items(self) -> list[tuple[str, int]]:
        """(product id, quantity) to order, in a stable order (a retried checkout must send
        the very same request), or CartError when the cart cannot be checked out."""
        if not self.lines:
            raise CartError("empty_cart", "the cart is empty")
        gone = sorted(li.product_id for li in self.lines if not li.available)
        if gone:
            raise CartError("unavailable_items", "remove the products that are no longer "
                            "sold before checking out: " + ", ".join(gone))
        return sorted((li.product_id, li.quantity) for li in self.lines)


def check_quantity(quantity: int) -> int:
    if not 1 <= quantity <= MAX_QUANTITY:
        raise CartError("invalid_quantity", f"quantity must be 1-{MAX_QUANTITY}")
    return quantity


def parse_price(amount: str) -> Decimal:
    """A catalog price (decimal string) or CartError: never negative, never NaN."""
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError) as exc:
        raise CartError("invalid_price", f"not a price: {amount!r}") from exc
    if not value.is_finite() or not Decimal(0) <= value <= MAX_AMOUNT:
        raise CartError("invalid_price", f"not a price: {amount!r}")
    return value


def format_amount(amount: Decimal, currency: str = CURRENCY) -> str:
    """KRW has no minor unit ("12900", never "12900.00"); others keep two decimals."""
    if currency == CURRENCY:
        return str(amount.quantize(Decimal(1)))
    return str(amount.quantize(Decimal("0.01")))


def order_idempotency_key(checkout_key: str) -> str:
    """The Idempotency-Key sent to orders for a checkout: derived from the caller's key, so
    every retry of one checkout maps to one order, and kept apart from keys the customer
    uses with orders directly (orders scopes keys per customer already)."""
    return "cart-checkout-" + hashlib.sha256(checkout_key.encode()).hexdigest()


def request_fingerprint(command: CheckOutCart) -> str:
    """A stable hash of a checkout request: the same key with another body is refused. A
    card enters as its length and last four digits only: the stored hash of a whole card
    number is reversed by trying the few million numbers that share its first six and last
    four digits (so another card with the same last four under the same key counts as the
    same checkout; orders tells them apart with a keyed hash when it is asked).

    The canonical form is the request's JSON as it was hashed when checkouts took a dict:
    a key stored then must match its retry now."""
    payment: dict[str, str] = command.payment.as_json()
    card = payment.pop("card_number", None)
    if card is not None:
        payment["card"] = f"{len(card)}:{card[-4:]}"
    canonical = {"shipping_address_id": command.shipping_address_id, "payment": payment}
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()
