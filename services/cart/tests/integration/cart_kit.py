"""Helpers for the cart integration tests: catalog and orders played by one tiny aiohttp
server on 127.0.0.1 (orders is another service: here only its answers matter; the e2e
tests use the real one)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from chassis.db import Database
from chassis.testing import ThreadedUpstream
from sqlalchemy import text

PRODUCTS = {
    "p-mug": {"id": "p-mug", "sku": "MUG-1", "name": "Mug", "status": "active",
              "price": {"amount": "12900", "currency": "KRW"}},
    "p-tea": {"id": "p-tea", "sku": "TEA-1", "name": "Tea", "status": "active",
              "price": {"amount": "3500", "currency": "KRW"}},
    "p-old": {"id": "p-old", "sku": "OLD-1", "name": "Old", "status": "discontinued",
              "price": {"amount": "100", "currency": "KRW"}},
    "p-usd": {"id": "p-usd", "sku": "USD-1", "name": "Import", "status": "active",
              "price": {"amount": "10.00", "currency": "USD"}},
}


@dataclass
class FakeUpstreams(ThreadedUpstream):
    """catalog (GET a product) and orders (POST an order, deduplicated per caller and
    Idempotency-Key like the real one), in their own thread and event loop."""

    products: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(PRODUCTS))
    down: set[str] = field(default_factory=set)  # "catalog" and/or "orders": answer 503
    refuse: tuple[int, dict[str, Any]] | None = None  # orders answers this instead
    hits: Counter[str] = field(default_factory=Counter)
    order_requests: list[dict[str, Any]] = field(default_factory=list)
    orders: dict[tuple[str, str], str] = field(default_factory=dict)  # (auth, key) -> id
    order_delay_s: float = 0.0
    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/catalog/products/{product}", self._product)
        app.router.add_post("/api/orders", self._order)

    async def _product(self, request: web.Request) -> web.Response:
        self.hits["catalog"] += 1
        if "catalog" in self.down:
            return web.json_response({"title": "down"}, status=503)
        found = self.products.get(request.match_info["product"])
        if found is None or found["status"] == "discontinued":  # as the catalog: 404
            return web.json_response({"title": "Not found"}, status=404)
        return web.json_response(found)

    async def _order(self, request: web.Request) -> web.Response:
        self.hits["orders"] += 1
        body = await request.json()
        self.order_requests.append({"body": body, "headers": dict(request.headers)})
        if self.order_delay_s:
            await asyncio.sleep(self.order_delay_s)
        if "orders" in self.down:
            return web.json_response({"title": "down"}, status=503)
        if self.refuse is not None:
            status, doc = self.refuse
            return web.json_response(doc, status=status,
                                     content_type="application/problem+json")
        key = (request.headers.get("Authorization", ""),
               request.headers.get("Idempotency-Key", ""))
        order_id = self.orders.setdefault(key, str(uuid.uuid4()))
        return web.json_response({"id": order_id, "status": "PENDING"}, status=202)


async def count(db: Database, table: str) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
