"""Two small HTTP servers standing in for the monolith's and the services' catalog reads,
holding the same three products in each side's own shape (what the sync's backfill would
leave), so the ACL's translation and comparison can be tested without a platform."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from mercato.migration.ids import services_id

LEGACY_CATEGORIES = [{"id": 3, "name": "Books", "parent_id": None},
                     {"id": 4, "name": "Games", "parent_id": 3}]
LEGACY_PRODUCTS = [
    {"id": n, "sku": f"SKU-{n}", "name": f"Product {n}", "description": "",
     "price": {"amount": f"{n * 1000}.00", "currency": "KRW"}, "active": True,
     "category": {"id": 3 if n < 9 else 4, "name": "Books" if n < 9 else "Games"},
     "in_stock": 5} for n in (7, 8, 9)]


def services_products() -> list[dict[str, Any]]:
    return [{"id": str(services_id("products", p["id"])), "sku": p["sku"], "name": p["name"],
             "description": "", "category": "books" if p["id"] < 9 else "games",
             "price": {"amount": str(p["id"] * 1000), "currency": "KRW"}, "status": "active",
             "version": 1, "created_at": "2026-01-01T00:00:00+00:00",
             "updated_at": "2026-01-01T00:00:00+00:00"} for p in LEGACY_PRODUCTS]


SERVICES_CATEGORIES = [
    {"id": str(services_id("categories", 3)), "slug": "books", "name": "Books"},
    {"id": str(services_id("categories", 4)), "slug": "games", "name": "Games"}]


class Side:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.products = copy.deepcopy(LEGACY_PRODUCTS)
        self.services = services_products()
        self.categories = copy.deepcopy(SERVICES_CATEGORIES)
        self.stock: dict[str, int] = {}  # services on hand by SKU; 4 when not given
        self.fail = False
        self.traceparents: set[str | None] = set()


def legacy_app(side: Side) -> web.Application:
    async def products(request: web.Request) -> web.Response:
        side.requests.append((request.method, request.path_qs))
        if request.method != "GET":
            return web.json_response({"written": True}, status=201)
        items = side.products
        if "category" in request.query:
            items = [p for p in items if str(p["category"]["id"]) == request.query["category"]]
        return web.json_response({"items": items, "total": len(items), "page": 1,
                                  "page_size": int(request.query.get("page_size", 20))},
                                 headers={"date": "Mon, 01 Jan 2026 00:00:00 GMT"})

    async def product(request: web.Request) -> web.Response:
        side.requests.append((request.method, request.path_qs))
        for p in side.products:
            if str(p["id"]) == request.match_info["id"]:
                return web.json_response(p)
        return web.json_response({"title": "No such product", "status": 404}, status=404)

    async def categories(request: web.Request) -> web.Response:
        side.requests.append((request.method, request.path_qs))
        resp = web.json_response(LEGACY_CATEGORIES)
        resp.enable_compression()  # gzip when the client accepts it, as proxies often do
        return resp

    async def cart(request: web.Request) -> web.Response:
        side.requests.append((request.method, request.path_qs))
        return web.json_response({"lines": []}, status=500 if side.fail else 200)

    app = web.Application()
    app.router.add_route("*", "/shop/products", products)
    app.router.add_get("/shop/products/{id}", product)
    app.router.add_get("/shop/categories", categories)
    app.router.add_route("*", "/shop/cart", cart)
    return app


def services_app(side: Side) -> web.Application:
    async def products(request: web.Request) -> web.Response:
        side.requests.append((request.method, request.path_qs))
        items = [p for p in side.services if p["status"] == "active"]
        if "category" in request.query:
            items = [p for p in items if p["category"] == request.query["category"]]
        if "q" in request.query:
            items = [p for p in items if request.query["q"].lower() in p["name"].lower()]
        page, size = int(request.query.get("page", 1)), int(request.query.get("page_size", 20))
        return web.json_response({"items": items[(page - 1) * size:page * size],
                                  "total": len(items), "page": page, "page_size": size})

    async def product(request: web.Request) -> web.Response:
        side.requests.append((request.method, request.path_qs))
        for p in side.services:
            if p["id"] == request.match_info["id"]:
                return web.json_response(p)
        return web.json_response({"title": "Not Found", "status": 404}, status=404)

    async def categories(request: web.Request) -> web.Response:
        side.requests.append((request.method, request.path_qs))
        return web.json_response({"items": side.categories})

    async def stock(request: web.Request) -> web.Response:
        side.requests.append((request.method, request.path_qs))
        return web.json_response({"items": [{"sku": s, "on_hand": side.stock.get(s, 4),
                                             "available": side.stock.get(s, 4), "reserved": 0}
                                            for s in request.query.getall("sku")]})

    @web.middleware
    async def failing(request: web.Request, handler: Any) -> web.StreamResponse:
        side.traceparents.add(request.headers.get("traceparent"))
        if side.fail:  # the services side is down: every call answers 503
            side.requests.append((request.method, request.path_qs))
            return web.json_response({"title": "Service Unavailable"}, status=503)
        return await handler(request)  # type: ignore[no-any-return]

    app = web.Application(middlewares=[failing])
    app.router.add_get("/api/catalog/products", products)
    app.router.add_get("/api/catalog/products/{id}", product)
    app.router.add_get("/api/catalog/categories", categories)
    app.router.add_get("/api/inventory/stock", stock)
    return app


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
