"""The catalog's public JSON shapes (the API contract in DESIGN.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from catalog.domain.model import Category, Product

Text200 = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
Amount = Annotated[str, StringConstraints(pattern=r"^\d{1,13}(\.\d{1,2})?$")]


class MoneyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Amount = Field(description="decimal string, e.g. \"12900\"")
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "KRW"


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Annotated[str, StringConstraints(min_length=2, max_length=40)]
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
