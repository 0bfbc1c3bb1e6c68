"""The catalog's side, through its API only (the catalog stays the owner of its data): a
product's stored record read and stated whole (``PUT``, idempotent, guarded by
``If-Match``), with the sync's own signed service identity (ADR 0023, 0029)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from chassis.service_identity import CallerSigner

from mercato.migration.sync.client import (
    CALLER,
    Rejected,
    ServiceClient,
    Stale,
    Stored,
    Transient,
    detail,
)
from mercato.migration.sync.records import Record, price_text

__all__ = ["CALLER", "Catalog", "Rejected", "Stale", "Stored", "Transient"]


def record_of(doc: dict[str, Any]) -> Record:
    return Record(sku=doc["sku"], name=doc["name"], description=doc["description"],
                  category=doc["category"], price=price_text(doc["price"]["amount"]),
                  currency=doc["price"]["currency"], active=doc["status"] == "active")


def body_of(record: Record) -> dict[str, Any]:
    return {"sku": record.sku, "name": record.name, "description": record.description,
            "category": record.category,
            "price": {"amount": record.price, "currency": record.currency},
            "status": "active" if record.active else "discontinued"}


class Catalog(ServiceClient):
    def __init__(self, base_url: Callable[[], Awaitable[str]], signer: CallerSigner,
                 timeout_s: float = 5.0) -> None:
        super().__init__("catalog", base_url, signer, timeout_s)

    async def read(self, catalog_id: uuid.UUID) -> Stored[Record] | None:
        status, body, headers = await self._call(
            "GET", f"/api/catalog/product-records/{catalog_id}")
        if status == 404:
            return None
        if status != 200:
            raise Rejected(f"reading {catalog_id}: {status} {detail(body)}")
        return Stored(record_of(body), body["version"], headers.get("ETag", ""))

    async def put(self, catalog_id: uuid.UUID, record: Record,
                  if_match: str | None) -> Stored[Record]:
        status, body, headers = await self._call(
            "PUT", f"/api/catalog/products/{catalog_id}", json=body_of(record),
            headers={"If-Match": if_match} if if_match else None)
        if status == 412:
            raise Stale(str(catalog_id))
        if status not in (200, 201):
            raise Rejected(f"{status} {detail(body)}")
        return Stored(record_of(body), body["version"], headers.get("ETag", ""))

    async def categories(self) -> dict[str, dict[str, str]]:
        status, body, _ = await self._call("GET", "/api/catalog/categories")
        if status != 200:
            raise Transient(f"listing categories: {status}")
        return {c["slug"]: c for c in body["items"]}

    async def put_category(self, category_id: uuid.UUID, slug: str, name: str) -> None:
        status, body, _ = await self._call("PUT", f"/api/catalog/categories/{category_id}",
                                           json={"slug": slug, "name": name})
        if status != 200:
            raise Rejected(f"category {slug}: {status} {detail(body)}")

    async def product_ids(self, page: int, page_size: int = 100) -> tuple[list[str], int]:
        """A page of the products on sale (the backfill's reverse pass)."""
        status, body, _ = await self._call(
            "GET", f"/api/catalog/products?page={page}&page_size={page_size}")
        if status != 200:
            raise Transient(f"listing products: {status}")
        return [p["id"] for p in body["items"]], int(body["total"])

