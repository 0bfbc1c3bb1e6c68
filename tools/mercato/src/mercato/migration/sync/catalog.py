"""The catalog's side, through its API only (the catalog stays the owner of its data): a
product's stored record read and stated whole (``PUT``, idempotent, guarded by
``If-Match``), with the sync's own signed service identity (ADR 0023, 0029)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from chassis.http_client import H_SERVICE_IDENTITY
from chassis.service_identity import CallerSigner

from mercato.migration.sync.records import Record, price_text

CALLER = "sync"  # the identity catalog lets state records (catalog.entrypoints.deps)


class Transient(Exception):
    """The catalog could not answer now (down, 5xx, timeout): try again later."""


class Rejected(Exception):
    """The catalog refused the record (4xx): retrying changes nothing."""


class Stale(Exception):
    """If-Match failed: the product changed since it was read."""


@dataclass(frozen=True, slots=True)
class Stored:
    record: Record
    version: int
    etag: str


def record_of(doc: dict[str, Any]) -> Record:
    return Record(sku=doc["sku"], name=doc["name"], description=doc["description"],
                  category=doc["category"], price=price_text(doc["price"]["amount"]),
                  currency=doc["price"]["currency"], active=doc["status"] == "active")


def body_of(record: Record) -> dict[str, Any]:
    return {"sku": record.sku, "name": record.name, "description": record.description,
            "category": record.category,
            "price": {"amount": record.price, "currency": record.currency},
            "status": "active" if record.active else "discontinued"}


class Catalog:
    def __init__(self, base_url: Callable[[], Awaitable[str]], signer: CallerSigner,
                 timeout_s: float = 5.0) -> None:
        self._base_url = base_url
        self._signer = signer
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=2)
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def _call(self, method: str, path: str, *, json: Any = None,
                    headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        url = await self._base_url() + path
        sent = {H_SERVICE_IDENTITY: self._signer.token_for("catalog"),
                "accept": "application/json", **(headers or {})}
        try:
            async with self._http.request(method, url, json=json, headers=sent) as resp:
                body = await resp.json(content_type=None) if resp.content_length != 0 else None
                status, got = resp.status, dict(resp.headers)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Transient(f"{method} {path}: {type(exc).__name__} {exc}") from exc
        if status >= 500 or status in (401, 403, 408, 429):
            # 401/403: keys not yet trusted after a restart; they will be.
            raise Transient(f"{method} {path}: {status} {_detail(body)}")
        return status, body, got

    async def read(self, catalog_id: uuid.UUID) -> Stored | None:
        status, body, headers = await self._call(
            "GET", f"/api/catalog/product-records/{catalog_id}")
        if status == 404:
            return None
        if status != 200:
            raise Rejected(f"reading {catalog_id}: {status} {_detail(body)}")
        return Stored(record_of(body), body["version"], headers.get("ETag", ""))

    async def put(self, catalog_id: uuid.UUID, record: Record,
                  if_match: str | None) -> Stored:
        status, body, headers = await self._call(
            "PUT", f"/api/catalog/products/{catalog_id}", json=body_of(record),
            headers={"If-Match": if_match} if if_match else None)
        if status == 412:
            raise Stale(str(catalog_id))
        if status not in (200, 201):
            raise Rejected(f"{status} {_detail(body)}")
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
            raise Rejected(f"category {slug}: {status} {_detail(body)}")

    async def product_ids(self, page: int, page_size: int = 100) -> tuple[list[str], int]:
        """A page of the products on sale (the backfill's reverse pass)."""
        status, body, _ = await self._call(
            "GET", f"/api/catalog/products?page={page}&page_size={page_size}")
        if status != 200:
            raise Transient(f"listing products: {status}")
        return [p["id"] for p in body["items"]], int(body["total"])


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or "")
    return ""
