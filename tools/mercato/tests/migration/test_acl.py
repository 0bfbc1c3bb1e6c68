"""The ACL between two stand-in sides: legacy answers passed through, legacy answers built
from the services, shadow comparisons counted, mismatches kept, no shadow writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from acl_standins import LEGACY_PRODUCTS, Side, legacy_app, serve, services_app
from mercato.migration.acl import Acl
from mercato.migration.guard import parse_acl_metrics
from mercato.migration.routes import CAPABILITY, PRIMARY, SHADOW


@dataclass
class Rig:
    acl: Acl
    url: str
    legacy: Side
    services: Side
    http: aiohttp.ClientSession

    async def get(self, path: str, primary: str = "legacy", shadow: bool = False,
                  method: str = "GET") -> tuple[int, object]:
        headers = {PRIMARY: primary, SHADOW: "1" if shadow else "0", CAPABILITY: "catalog"}
        async with self.http.request(method, self.url + path, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def settled(self) -> None:
        while self.acl.shadows:
            await asyncio.gather(*self.acl.shadows)

    async def counters(self) -> dict[tuple[str, ...], float]:
        async with self.http.get(self.url + "/metrics") as resp:
            return parse_acl_metrics(await resp.text())


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    legacy, services = Side(), Side()
    async with serve(legacy_app(legacy)) as lurl, serve(services_app(services)) as surl:
        acl = Acl(legacy_url=lurl, services_url=surl, max_shadow=4)
        async with serve(acl.app()) as url, aiohttp.ClientSession() as http:
            yield Rig(acl, url, legacy, services, http)


async def test_legacy_primary_passes_the_monolith_through(rig: Rig) -> None:
    status, body = await rig.get("/shop/products?page_size=5")
    assert status == 200 and body["items"] == LEGACY_PRODUCTS  # type: ignore[index]
    assert rig.services.requests == []


async def test_services_primary_answers_in_the_legacy_shape(rig: Rig) -> None:
    status, body = await rig.get("/shop/products?category=3", primary="services")
    assert status == 200
    assert body == {"items": [{**p, "in_stock": 4} for p in LEGACY_PRODUCTS[:2]],
                    "total": 2, "page": 1, "page_size": 20}
    assert ("GET", "/api/catalog/products?page=1&page_size=20&category=books") \
        in rig.services.requests
    assert rig.legacy.requests == []
    status, one = await rig.get("/shop/products/9", primary="services")
    assert (status, one) == (200, {**LEGACY_PRODUCTS[2], "in_stock": 4})
    status, _ = await rig.get("/shop/products/999", primary="services")
    assert status == 404
    status, problem = await rig.get("/shop/products?page=zero", primary="services")
    assert status == 422 and "page" in problem["detail"]  # type: ignore[index]


async def test_a_shadowed_read_is_compared_and_agrees(rig: Rig) -> None:
    for path in ("/shop/products", "/shop/products/8", "/shop/categories", "/shop/products/77"):
        await rig.get(path, shadow=True)
    await rig.settled()
    counters = await rig.counters()
    assert counters[("acl_shadow_comparisons_total", "catalog", "/shop/products/{id}")] == 2
    assert counters[("acl_shadow_comparisons_total", "catalog", "/shop/categories")] == 1
    assert not any(k[0] == "acl_shadow_mismatches_total" and v for k, v in counters.items())
    assert rig.acl.mismatches.recent() == []


async def test_a_mismatch_is_counted_and_kept_with_both_bodies(rig: Rig) -> None:
    rig.services.services[0]["name"] = "Renamed on the services side"
    await rig.get("/shop/products/7", shadow=True)
    await rig.get("/shop/products/7", primary="services", shadow=True)
    await rig.settled()
    counters = await rig.counters()
    assert counters[("acl_shadow_mismatches_total", "catalog", "/shop/products/{id}")] == 2
    async with rig.http.get(rig.url + "/acl/mismatches?capability=catalog") as resp:
        kept = (await resp.json())["items"]
    assert [m["primary"] for m in kept] == ["services", "legacy"]
    assert kept[0]["legacy"]["body"]["name"] == "Product 7"
    assert kept[0]["services"]["body"]["name"] == "Renamed on the services side"
    assert kept[0]["differences"] == [
        "$.name: 'Product 7' (legacy) != 'Renamed on the services side' (services)"]


async def test_a_write_is_never_shadowed(rig: Rig) -> None:
    status, _ = await rig.get("/shop/products", shadow=True, method="POST")
    await rig.settled()
    assert status == 201
    assert rig.legacy.requests == [("POST", "/shop/products")]
    assert rig.services.requests == []


async def test_errors_are_counted_per_side(rig: Rig) -> None:
    rig.services.fail = True
    status, _ = await rig.get("/shop/products", primary="services")
    assert status == 502
    counters = await rig.counters()
    assert counters[("acl_upstream_requests_total", "catalog", "error", "primary",
                     "services")] == 1


async def test_an_untranslated_request_is_a_clear_501(rig: Rig) -> None:
    async with rig.http.post(rig.url + "/shop/products", headers={PRIMARY: "services"}) as resp:
        assert resp.status == 501
        assert "cannot answer POST /shop/products" in \
            (await resp.json(content_type=None))["detail"]
    async with rig.http.get(rig.url + "/shop/cart", headers={PRIMARY: "sideways"}) as resp:
        assert resp.status == 400
    # The cart is translated: without a token, the monolith's 401, not a 501.
    async with rig.http.get(rig.url + "/shop/cart", headers={PRIMARY: "services"}) as resp:
        assert resp.status == 401


async def test_shadows_beyond_the_bound_are_skipped_not_queued(rig: Rig) -> None:
    await asyncio.gather(*(rig.get("/shop/products/7", shadow=True) for _ in range(12)))
    await rig.settled()
    counters = await rig.counters()
    compared = counters[("acl_shadow_comparisons_total", "catalog", "/shop/products/{id}")]
    skipped = counters.get(("acl_shadow_skipped_total", "catalog"), 0)
    assert compared + skipped == 12 and compared >= 4


async def test_a_translated_read_joins_the_client_trace() -> None:
    """Where the process's aiohttp client is instrumented (telemetry on, or an earlier test of
    the session), it injects the current trace context over the headers passed: the client's
    trace must be the current one then, or every translated read starts a trace of its own."""
    import httpx2 as httpx
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.sdk.trace import TracerProvider

    trace_id = "0af7651916cd43dd8448eb211c80319c"
    headers = {PRIMARY: "services", CAPABILITY: "catalog",
               "traceparent": f"00-{trace_id}-b7ad6b7169203331-01"}
    instrumentor = AioHttpClientInstrumentor()
    ours = not instrumentor.is_instrumented_by_opentelemetry
    if ours:
        instrumentor.instrument(tracer_provider=TracerProvider())
    try:
        legacy, services = Side(), Side()
        async with serve(legacy_app(legacy)) as lurl, serve(services_app(services)) as surl:
            acl = Acl(legacy_url=lurl, services_url=surl, max_shadow=4)
            # The test's own client is not aiohttp: its headers reach the ACL as written.
            async with serve(acl.app()) as url, httpx.AsyncClient() as http:
                resp = await http.get(url + "/shop/products/7", headers=headers)
        assert resp.status_code == 200
    finally:
        if ours:
            instrumentor.uninstrument()
    assert services.traceparents
    assert {t.split("-")[1] for t in services.traceparents} == {trace_id}
