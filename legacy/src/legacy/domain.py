"""The shop's rules, plain Python: what a checkout may take and what it costs, and the
shapes of what customers type in. Nothing here touches the database or the network."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal

MAX_QUANTITY = 99
MAX_LINES = 50
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}$")


class Problem(Exception):
    """A refusal the client caused: answered as problem+json with ``status``."""

    def __init__(self, status: int, title: str, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


def valid_email(email: str) -> str:
    email = email.strip()
    if not _EMAIL.match(email):
        raise Problem(422, "Invalid email", f"{email[:80]!r} is not an email address")
    return email


def valid_password(password: str) -> str:
    if not 8 <= len(password) <= 128:
        raise Problem(422, "Invalid password", "a password has 8 to 128 characters")
    return password


@dataclass(frozen=True)
class Offer:
    """A product as checkout sees it: its price and whether it is still sold."""

    price: Decimal
    active: bool


@dataclass(frozen=True)
class CheckoutPlan:
    lines: dict[int, tuple[int, Decimal]]  # product id -> (quantity, unit price)
    total: Decimal
    stock_after: dict[int, int]  # product id -> on hand after the order


def normalise_lines(items: list[tuple[int, int]]) -> dict[int, int]:
    """Requested (product, quantity) pairs merged per product; bounded."""
    if not items:
        raise Problem(422, "Empty cart", "there is nothing to buy: add a product first")
    merged: dict[int, int] = {}
    for product_id, quantity in items:
        if quantity < 1:
            raise Problem(422, "Invalid quantity", f"quantity of {product_id} must be >= 1")
        merged[product_id] = merged.get(product_id, 0) + quantity
    if len(merged) > MAX_LINES:
        raise Problem(422, "Too many lines", f"at most {MAX_LINES} products per order")
    for product_id, quantity in merged.items():
        if quantity > MAX_QUANTITY:
            raise Problem(422, "Invalid quantity",
                          f"at most {MAX_QUANTITY} of product {product_id} per order")
    return merged


def plan_checkout(wanted: dict[int, int], offers: dict[int, Offer],
                  on_hand: dict[int, int]) -> CheckoutPlan:
    """What the order takes from stock and what it costs, or the first reason it cannot go
    through. ``on_hand`` must come from rows the caller holds locked until it commits."""
    missing = sorted(p for p in wanted if p not in offers or not offers[p].active)
    if missing:
        raise Problem(422, "Product not available",
                      f"not for sale: {', '.join(map(str, missing))}", product_ids=missing)
    short = sorted(p for p, q in wanted.items() if on_hand.get(p, 0) < q)
    if short:
        raise Problem(409, "Out of stock",
                      "not enough stock for: " + ", ".join(
                          f"{p} (wanted {wanted[p]}, {on_hand.get(p, 0)} left)" for p in short),
                      product_ids=short)
    lines = {p: (q, offers[p].price) for p, q in wanted.items()}
    total = sum((price * q for q, price in lines.values()), Decimal("0"))
    return CheckoutPlan(lines=lines, total=total,
                        stock_after={p: on_hand[p] - q for p, q in wanted.items()})


def charge_key(customer_id: int, idempotency_key: str) -> str:
    """The provider's idempotency key for one checkout: the same for every retry of the same
    request, so a retry after a crash finds the charge made before instead of a second one."""
    return f"legacy-checkout:{customer_id}:{idempotency_key}"


def tracking_number(order_id: int) -> str:
    digest = hashlib.sha256(f"legacy-shipment:{order_id}".encode()).hexdigest()[:10].upper()
    return f"LG{order_id:08d}{digest}"


def money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"amount": f"{amount:.2f}", "currency": currency}
