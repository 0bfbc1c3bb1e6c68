"""Events the catalog publishes (stream CATALOG_EVENTS)."""

from __future__ import annotations

from typing import ClassVar

from contracts.base import Event


class _CatalogEvent(Event):
    owner: ClassVar[str] = "catalog"


class ProductCreated(_CatalogEvent):
    product_id: str
    sku: str
    name: str
    category: str
    price_amount: str
    price_currency: str
    # The product's version after the change (optional: older producers did not send it).
    # Lets a follower that wrote a version itself (the migration's sync) skip its echo.
    product_version: int | None = None


class ProductUpdated(_CatalogEvent):
    product_id: str
    sku: str
    name: str
    category: str
    product_version: int


class PriceChanged(_CatalogEvent):
    product_id: str
    sku: str
    old_amount: str
    new_amount: str
    currency: str
    product_version: int | None = None


class ProductDiscontinued(_CatalogEvent):
    product_id: str
    sku: str
    product_version: int | None = None
