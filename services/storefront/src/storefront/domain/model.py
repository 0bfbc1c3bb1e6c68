"""What the storefront shows, as plain values: money as people read it, composed pages whose
parts may be missing, and the rules a page follows (paging, order states, card checks).

No framework here: the composition in service_layer fills these from the services' answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

TERMINAL_STATUSES = frozenset({"APPROVED", "REJECTED", "CANCELLED"})
# Shipping's states after which a parcel has left: a cancel is refused by orders then.
DISPATCHED = frozenset({"DISPATCHED", "IN_TRANSIT", "DELIVERED"})
CURRENCY_SYMBOLS = {"KRW": "₩", "USD": "$", "EUR": "€", "JPY": "¥"}
# Currencies without minor units (ISO 4217 exponent 0).
WHOLE_UNITS = frozenset({"KRW", "JPY"})


def format_money(amount: Any, currency: str | None = "KRW") -> str:
    """``("12900", "KRW")`` -> ``₩12,900``; minor units shown only where the currency has
    them. An amount that is not a number is shown as it came (never a crash on a page)."""
    currency = (currency or "KRW").upper()
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return f"{amount} {currency}"
    symbol = CURRENCY_SYMBOLS.get(currency)
    sign = "-" if value < 0 else ""
    value = abs(value)
    text = f"{value:,.0f}" if currency in WHOLE_UNITS else f"{value:,.2f}"
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency}"


def money_of(doc: Any) -> str:
    """A service's ``{amount, currency}`` formatted; ``—`` when absent."""
    if not isinstance(doc, dict) or "amount" not in doc:
        return "—"
    return format_money(doc["amount"], doc.get("currency"))


@dataclass(frozen=True)
class Paging:
    page: int
    page_size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


@dataclass(frozen=True)
class Availability:
    """What inventory says about a SKU, or that it could not be asked (``known=False``)."""

    known: bool
    available: int = 0

    @property
    def label(self) -> str:
        if not self.known:
            return "Availability unknown"
        if self.available <= 0:
            return "Out of stock"
        if self.available < 5:
            return f"Only {self.available} left"
        return "In stock"

    @property
    def can_buy(self) -> bool:
        # Unknown stock does not stop a purchase: the order saga reserves stock and says no
        # itself when there is none.
        return not self.known or self.available > 0


@dataclass
class Composed:
    """A page made of several services' answers; ``missing`` names the parts that could not
    be fetched, so the template marks them instead of failing the whole page."""

    parts: dict[str, Any] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)

    def get(self, name: str, default: Any = None) -> Any:
        return self.parts.get(name, default)

    def mark_missing(self, name: str) -> None:
        self.missing.add(name)


def luhn_ok(number: str) -> bool:
    if not number.isascii() or not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def clean_card_number(raw: str) -> str:
    """What a person types (spaces, dashes) -> the digits the payments vault takes."""
    return "".join(ch for ch in raw if ch not in " -")


def order_needs_polling(order: dict[str, Any] | None, shipment: dict[str, Any] | None,
                        shipment_known: bool) -> bool:
    """An order page keeps asking while the saga runs, and after approval until the parcel's
    tracking number is known (the shipment is created during the saga, the number may lag)."""
    if order is None:
        return True
    status = order.get("status")
    if status not in TERMINAL_STATUSES:
        return True
    if status == "APPROVED":
        return not shipment_known or not (shipment and shipment.get("tracking_number"))
    return False


def can_cancel(order: dict[str, Any], shipment: dict[str, Any] | None) -> bool:
    if order.get("status") in ("REJECTED", "CANCELLED") or order.get("cancel_requested"):
        return False
    return not (shipment and shipment.get("status") in DISPATCHED)
