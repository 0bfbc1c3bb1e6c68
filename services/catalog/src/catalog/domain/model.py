"""Catalog domain: products, categories and money. Plain Python, no framework."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation

from chassis.clock import utc_now

# ISO 4217 minor units for the currencies the shop accepts; KRW has none.
CURRENCY_EXPONENT = {"KRW": 0, "USD": 2, "EUR": 2, "JPY": 0}
MAX_AMOUNT = Decimal("1000000000000")
SKU_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,39}$")
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class CatalogError(ValueError):
    """A rule of the catalog was broken by the caller's input."""


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    @classmethod
    def parse(cls, amount: str | int | Decimal, currency: str) -> Money:
        currency = currency.upper()
        if currency not in CURRENCY_EXPONENT:
            raise CatalogError(f"unsupported currency {currency!r}; use one of "
                               + ", ".join(sorted(CURRENCY_EXPONENT)))
        try:
            value = Decimal(str(amount))
        except InvalidOperation as exc:
            raise CatalogError(f"amount {amount!r} is not a decimal number") from exc
        if not value.is_finite() or value <= 0 or value >= MAX_AMOUNT:
            raise CatalogError("amount must be positive and below 10^12")
        exponent = CURRENCY_EXPONENT[currency]
        if value != value.quantize(Decimal(1).scaleb(-exponent)):
            raise CatalogError(f"{currency} amounts have at most {exponent} decimal places")
        return cls(value.quantize(Decimal(1).scaleb(-exponent)), currency)

    @classmethod
    def stored(cls, amount: Decimal, currency: str) -> Money:
        """Money read back from the database (numeric(16,2)): shown with the currency's own
        minor units, so KRW 99000.00 reads as "99000", as it was written."""
        exponent = CURRENCY_EXPONENT.get(currency, 2)
        return cls(Decimal(amount).quantize(Decimal(1).scaleb(-exponent)), currency)

    def as_dict(self) -> dict[str, str]:
        return {"amount": str(self.amount), "currency": self.currency}


@dataclass(frozen=True, slots=True)
class Category:
    id: uuid.UUID
    slug: str
    name: str

    @classmethod
    def new(cls, slug: str, name: str) -> Category:
        if not SLUG_PATTERN.match(slug):
            raise CatalogError("a category slug is lower-case letters, digits and dashes")
        if not name.strip():
            raise CatalogError("a category needs a name")
        return cls(uuid.uuid4(), slug, name.strip())


ACTIVE, DISCONTINUED = "active", "discontinued"


@dataclass(frozen=True, slots=True)
class Product:
    id: uuid.UUID
    sku: str
    name: str
    description: str
    category: str  # category slug
    price: Money
    status: str = ACTIVE
    version: int = 1
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)

    @classmethod
    def new(cls, *, sku: str, name: str, description: str, category: str, price: Money) -> Product:
        sku = sku.strip().upper()
        if not SKU_PATTERN.match(sku):
            raise CatalogError("a SKU is 2-40 upper-case letters, digits and dashes")
        if not name.strip():
            raise CatalogError("a product needs a name")
        return cls(uuid.uuid4(), sku, name.strip(), description.strip(), category, price)

    def changed(self, *, name: str | None = None, description: str | None = None,
                category: str | None = None, price: Money | None = None) -> Product:
        if self.status == DISCONTINUED:
            raise CatalogError("a discontinued product cannot be changed")
        if name is not None and not name.strip():
            raise CatalogError("a product needs a name")
        return replace(
            self,
            name=name.strip() if name is not None else self.name,
            description=description.strip() if description is not None else self.description,
            category=category if category is not None else self.category,
            price=price if price is not None else self.price,
            version=self.version + 1,
            updated_at=utc_now(),
        )

    def recorded(self, *, name: str, description: str, category: str, price: Money,
                 status: str) -> Product:
        """The whole record as the migration sync (or an admin) states it. Unlike
        ``changed``, a discontinued product may come back: the monolith's back office
        switches products off and on again. The same record is returned unchanged (no new
        version), so stating it twice changes nothing."""
        if status not in (ACTIVE, DISCONTINUED):
            raise CatalogError(f"status is {ACTIVE} or {DISCONTINUED}")
        if not name.strip():
            raise CatalogError("a product needs a name")
        after = replace(self, name=name.strip(), description=description.strip(),
                        category=category, price=price, status=status)
        if after == self:
            return self
        return replace(after, version=self.version + 1, updated_at=utc_now())

    def discontinued(self) -> Product:
        return replace(self, status=DISCONTINUED, version=self.version + 1, updated_at=utc_now())

    @property
    def etag(self) -> str:
        return f'W/"{self.id.hex}-{self.version}"'
