"""`mercato up` stocks the demo catalog through the edge, which may answer 502-504 while an
instance registers or after a moment's ejection (a CI run's inventory answered 503 once and
the demo catalog was left without stock)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from mercato.runtime.supervisor import stock_products


class Edge:
    """Catalog and inventory behind a fake edge: each path answers 503 ``unready`` times."""

    def __init__(self, unready: int) -> None:
        self.unready: dict[str, int] = {}
        self.default = unready
        self.stock: dict[str, int] = {"MUG-1": 5}
        self.puts: list[tuple[str, Any, str | None]] = []

    def _flaky(self, request: web.Request) -> web.Response | None:
        key = f"{request.method} {request.path}"
        left = self.unready.setdefault(key, self.default)
        if left > 0:
            self.unready[key] = left - 1
            return web.json_response({"error": "no healthy upstream"}, status=503)
        return None

    async def products(self, request: web.Request) -> web.Response:
        return self._flaky(request) or web.json_response(
            {"items": [{"sku": "MUG-1"}, {"sku": "TEA-1"}, {"sku": "KET-1"}]})

    async def get_stock(self, request: web.Request) -> web.Response:
        sku = request.match_info["sku"]
        if (refused := self._flaky(request)) is not None:
            return refused
        if sku not in self.stock:
            return web.json_response({"detail": "no stock row"}, status=404)
        return web.json_response({"sku": sku, "on_hand": self.stock[sku]})

    async def put_stock(self, request: web.Request) -> web.Response:
        if (refused := self._flaky(request)) is not None:
            return refused
        sku = request.match_info["sku"]
        body = await request.json()
        self.puts.append((sku, body, request.headers.get("Authorization")))
        self.stock[sku] = body["on_hand"]
        return web.json_response({"sku": sku, "on_hand": body["on_hand"]})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/catalog/products", self.products)
        app.router.add_get("/api/inventory/stock/{sku}", self.get_stock)
        app.router.add_put("/api/inventory/stock/{sku}", self.put_stock)
        return app


async def stock(edge: Edge, **kw: Any) -> int:
    server = TestServer(edge.app(), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            return await stock_products(http, str(server.make_url("")).rstrip("/"), "tok",
                                        40, pause_s=0.01, **kw)
    finally:
        await server.close()


async def test_an_edge_not_routing_yet_is_asked_again_and_every_product_is_stocked() -> None:
    edge = Edge(unready=2)
    assert await stock(edge) == 2  # MUG-1 had stock already: left alone
    assert edge.stock == {"MUG-1": 5, "TEA-1": 40, "KET-1": 40}
    assert all(auth == "Bearer tok" for _, _, auth in edge.puts)


async def test_an_edge_that_never_routes_gives_up_after_the_wait() -> None:
    with pytest.raises(aiohttp.ClientResponseError) as caught:
        await stock(Edge(unready=10_000), wait_s=0.2)
    assert caught.value.status == 503
