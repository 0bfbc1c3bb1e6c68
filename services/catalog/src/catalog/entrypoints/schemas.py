"""The catalog's public JSON shapes (the API contract in DESIGN.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from catalog.domain.model import CURRENCY_EXPONENT, Category, Product

# The domain's rules as JSON Schema (ECMA 262) patterns, so the published schema accepts
# exactly what the service does: tests/unit/test_schema_patterns.py checks each against
# the domain. Python's str.strip() whitespace, which the domain trims:
SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Product.new/changed and Category.new: a name is not only whitespace.
NAME = rf"^[{SPACE}]*[^{SPACE}][\s\S]*$"
# Product.new: SKU_PATTERN once trimmed and upper-cased.
SKU = rf"^[{SPACE}]*[A-Za-z0-9][A-Za-z0-9-]{{1,39}}[{SPACE}]*$"
# Money.parse: above zero, below 10^12, no more decimals than the currency has (on top of
# the field's own pattern: at most 13 digits, 2 decimals).
AMOUNT_CENTS = r"^0*(?:[1-9][0-9]{0,11}(?:\.[0-9]{1,2})?|0?\.(?:[1-9][0-9]?|0[1-9]))$"
AMOUNT_WHOLE = r"^0*[1-9][0-9]{0,11}(?:\.0{1,2})?$"
CURRENCIES = sorted(CURRENCY_EXPONENT)

Text200 = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True),
                    Field(json_schema_extra={"pattern": NAME})]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
# ASCII digits: \d would also take other scripts' digits (Decimal reads them), which no
# schema reader expects.
Amount = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,13}(\.[0-9]{1,2})?$")]


class MoneyIn(BaseModel):
    # Which amounts are valid depends on the currency: whole units for KRW and JPY.
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "if": {"properties": {"currency": {"enum": [
            c for c in CURRENCIES if CURRENCY_EXPONENT[c] == 0]}}},
        "then": {"properties": {"amount": {"pattern": AMOUNT_WHOLE}}},
        "else": {"properties": {"amount": {"pattern": AMOUNT_CENTS}}}})
    amount: Amount = Field(description="decimal string above 0 and below 10^12, e.g. "
                                       "\"12900\"; whole units for KRW and JPY")
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = Field(
        "KRW", json_schema_extra={"enum": CURRENCIES})


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Annotated[str, StringConstraints(min_length=2, max_length=40)] = Field(
        json_schema_extra={"pattern": SKU})
    name: Text200
    description: Annotated[str, StringConstraints(max_length=5000)] = ""
    category: Slug
    price: MoneyIn


class ProductPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text200 | None = None
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None
    category: Slug | None = None
    price: MoneyIn | None = None


class ProductRecordIn(ProductIn):
    """A product stated whole (PUT): what it is now, status included."""
    status: Literal["active", "discontinued"] = "active"


class CategoryRecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: Slug
    name: Text200


class CategoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: Slug
    name: Text200


class MoneyOut(BaseModel):
    amount: str
    currency: str


class ProductOut(BaseModel):
    id: str
    sku: str
    name: str
    description: str
    category: str
    price: MoneyOut
    status: str
    version: int
    created_at: datetime
    updated_at: datetime


class ProductPageOut(BaseModel):
    items: list[ProductOut]
    total: int
    page: int
    page_size: int


class CategoryOut(BaseModel):
    id: str
    slug: str
    name: str


def product_json(p: Product) -> dict[str, Any]:
    return {"id": str(p.id), "sku": p.sku, "name": p.name, "description": p.description,
            "category": p.category, "price": p.price.as_dict(), "status": p.status,
            "version": p.version, "created_at": p.created_at.isoformat(),
            "updated_at": p.updated_at.isoformat()}


def category_json(c: Category) -> dict[str, Any]:
    return {"id": str(c.id), "slug": c.slug, "name": c.name}
