"""The service client against a tiny aiohttp server on 127.0.0.1 (no platform needed)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from chassis.discovery import Resolver
from chassis.errors import ServiceUnavailable
from chassis.http_client import (
    BreakerSettings,
    BulkheadFull,
    CircuitBreaker,
    CircuitOpen,
    ServiceClient,
    UpstreamUnavailable,
)
from chassis.registry import Instance
from chassis.tracing import client_trace_config
from mercato.runtime.paths import free_port
from opentelemetry import trace
from prometheus_client import CollectorRegistry


@dataclass
class Upstream:
    """The fake service's knobs and what it saw."""

    hits: Counter[str] = field(default_factory=Counter)
    fail_next: int = 0  # answer 503 to the next N requests
    status: int = 200
    in_flight: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    seen_headers: list[dict[str, str]] = field(default_factory=list)


UPSTREAM = web.AppKey("upstream", Upstream)


async def _handle(request: web.Request) -> web.Response:
    up = request.app[UPSTREAM]
    up.hits[f"{request.method} {request.path}"] += 1
    up.seen_headers.append(dict(request.headers))
    if request.path == "/slow":
        await asyncio.sleep(5)
    if request.path == "/block":
        up.in_flight += 1
        await up.release.wait()
        up.in_flight -= 1
    if up.fail_next > 0:
        up.fail_next -= 1
        return web.json_response({"title": "busy"}, status=503)
    return web.json_response({"path": request.path, "query": dict(request.query)},
                             status=up.status)


@dataclass
class Server:
    upstream: Upstream
    port: int


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    app = web.Application()
    app[UPSTREAM] = upstream = Upstream()
    app.router.add_route("*", "/{tail:.*}", _handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield Server(upstream, port)
    upstream.release.set()
    await runner.cleanup()


class FakeResolver:
    """Stands in for chassis.discovery.Resolver: service name -> the test server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.resolved: list[str] = []

    async def resolve_url(self, url: str) -> str:
        self.resolved.append(url)
        host = url.split("/")[2]
        return url.replace(f"http://{host}", f"http://127.0.0.1:{self.port}", 1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    s = aiohttp.ClientSession()
    yield s
    await s.close()


def client(session: aiohttp.ClientSession, server: Server, **kw: object) -> ServiceClient:
    kw.setdefault("backoff_base_s", 0.001)
    return ServiceClient(lambda: session, FakeResolver(server.port), **kw)  # type: ignore[arg-type]


async def test_resolves_the_service_name_and_propagates_identity_and_trace(
        session: aiohttp.ClientSession, server: Server) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    resolver = FakeResolver(server.port)
    c = ServiceClient(lambda: session, resolver, service_identity="orders")
    with TracerProvider().get_tracer("t").start_as_current_span("caller") as span:
        r = await c.get("http://catalog/api/catalog/products/p1", params={"x": "1"},
                        authorization="Bearer abc")
        trace_id = format(span.get_span_context().trace_id, "032x")
    assert r.status == 200 and r.ok
    assert r.json() == {"path": "/api/catalog/products/p1", "query": {"x": "1"}}
    assert resolver.resolved == ["http://catalog/api/catalog/products/p1"]
    seen = server.upstream.seen_headers[0]
    assert seen["Authorization"] == "Bearer abc" and seen["Mercato-Caller"] == "orders"
    assert seen["traceparent"].split("-")[1] == trace_id


async def test_a_slow_answer_times_out_as_unavailable(
        session: aiohttp.ClientSession, server: Server) -> None:
    c = client(session, server, timeout_s=0.1, retries=1)
    started = time.perf_counter()
    with pytest.raises(UpstreamUnavailable) as caught:
        await c.get("http://catalog/slow")
    assert time.perf_counter() - started < 1.5
    assert "within 0.1s" in caught.value.reason
    assert server.upstream.hits["GET /slow"] == 2  # one retry: GET is idempotent
    assert isinstance(caught.value, ServiceUnavailable) and caught.value.status == 503


async def test_get_is_retried_on_503_until_it_succeeds(
        session: aiohttp.ClientSession, server: Server) -> None:
    registry = CollectorRegistry()
    c = client(session, server, retries=2, registry=registry)
    server.upstream.fail_next = 2
    r = await c.get("http://catalog/items")
    assert r.status == 200 and server.upstream.hits["GET /items"] == 3
    assert registry.get_sample_value("http_client_retries_total", {"target": "catalog"}) == 2
    assert registry.get_sample_value("http_client_calls_total",
                                     {"target": "catalog", "outcome": "ok"}) == 1


async def test_post_without_idempotency_key_is_not_retried(
        session: aiohttp.ClientSession, server: Server) -> None:
    c = client(session, server, retries=3)
    server.upstream.fail_next = 1
    with pytest.raises(UpstreamUnavailable) as caught:
        await c.post("http://orders/api/orders", json={"a": 1})
    assert caught.value.upstream_status == 503
    assert server.upstream.hits["POST /api/orders"] == 1


async def test_post_with_idempotency_key_is_retried(
        session: aiohttp.ClientSession, server: Server) -> None:
    c = client(session, server, retries=3)
    server.upstream.fail_next = 1
    r = await c.post("http://orders/api/orders", json={"a": 1}, idempotency_key="k-1")
    assert r.status == 200 and server.upstream.hits["POST /api/orders"] == 2
    assert all(h["Idempotency-Key"] == "k-1" for h in server.upstream.seen_headers)


async def test_client_errors_are_returned_not_retried_and_do_not_trip_the_breaker(
        session: aiohttp.ClientSession, server: Server) -> None:
    c = client(session, server, breaker=BreakerSettings(consecutive_failures=1))
    server.upstream.status = 404
    for _ in range(3):
        r = await c.get("http://catalog/missing")
        assert r.status == 404 and not r.ok
    assert server.upstream.hits["GET /missing"] == 3
    assert c.breaker("catalog").state == CircuitBreaker.CLOSED


async def test_breaker_opens_after_failures_and_half_opens_after_the_cool_down(
        session: aiohttp.ClientSession, server: Server) -> None:
    clock = FakeClock()
    registry = CollectorRegistry()
    c = client(session, server, retries=0, clock=clock, registry=registry,
               breaker=BreakerSettings(consecutive_failures=3, cool_down_s=5))
    server.upstream.fail_next = 100
    for _ in range(3):
        with pytest.raises(UpstreamUnavailable):
            await c.get("http://catalog/x")
    with pytest.raises(CircuitOpen):
        await c.get("http://catalog/x")
    assert server.upstream.hits["GET /x"] == 3  # the open breaker did not call out
    assert registry.get_sample_value("http_client_breaker_state", {"target": "catalog"}) == 2
    # Other targets have their own breaker.
    server.upstream.fail_next = 0
    assert (await c.get("http://identity/x")).status == 200

    clock.now += 5  # cool-down over: one probe goes out; it fails, so the breaker reopens
    server.upstream.fail_next = 1
    with pytest.raises(UpstreamUnavailable) as probe:
        await c.get("http://catalog/x")
    assert not isinstance(probe.value, CircuitOpen)
    with pytest.raises(CircuitOpen):
        await c.get("http://catalog/x")

    clock.now += 5  # the next probe succeeds and closes it
    assert (await c.get("http://catalog/x")).status == 200
    assert c.breaker("catalog").state == CircuitBreaker.CLOSED
    assert (await c.get("http://catalog/x")).status == 200
    assert registry.get_sample_value("http_client_breaker_state", {"target": "catalog"}) == 0
    # Every change is counted by the state entered: opened twice (the failed probe reopened
    # it), half-open twice, closed once, so a flap between two scrapes still shows.
    entered = {state: registry.get_sample_value("http_client_breaker_transitions_total",
                                                {"target": "catalog", "state": state})
               for state in ("open", "half_open", "closed")}
    assert entered == {"open": 2, "half_open": 2, "closed": 1}
    assert registry.get_sample_value("http_client_breaker_transitions_total",
                                     {"target": "identity", "state": "open"}) == 0


def test_breaker_opens_on_failure_ratio_and_lets_one_probe_at_a_time() -> None:
    clock = FakeClock()
    b = CircuitBreaker(BreakerSettings(consecutive_failures=99, failure_ratio=0.5, window=10,
                                       min_calls=10, cool_down_s=1), clock)
    for i in range(9):
        assert b.allow()
        b.failure() if i % 2 else b.success()
    assert b.state == CircuitBreaker.CLOSED  # 4 of 9: below the ratio and min_calls
    b.failure()  # 5 of 10
    assert b.state == CircuitBreaker.OPEN and not b.allow()
    clock.now += 1
    assert b.allow() and b.state == CircuitBreaker.HALF_OPEN
    assert not b.allow()  # a second caller waits for the probe's verdict
    b.release()  # the probe was cancelled: another may go
    assert b.allow()
    b.success()
    assert b.state == CircuitBreaker.CLOSED and b.allow()


async def test_bulkhead_rejects_when_full_and_isolates_targets(
        session: aiohttp.ClientSession, server: Server) -> None:
    registry = CollectorRegistry()
    c = client(session, server, bulkhead=2, timeout_s=5, registry=registry)
    held = [asyncio.create_task(c.get("http://catalog/block")) for _ in range(2)]
    async with asyncio.timeout(5):
        while server.upstream.in_flight < 2:
            await asyncio.sleep(0.005)
    with pytest.raises(BulkheadFull):
        await c.get("http://catalog/other")
    assert server.upstream.hits["GET /other"] == 0
    assert (await c.get("http://identity/other")).status == 200  # another target's bulkhead
    server.upstream.release.set()
    assert [r.status for r in await asyncio.gather(*held)] == [200, 200]
    assert (await c.get("http://catalog/other")).status == 200  # capacity is back
    assert registry.get_sample_value("http_client_calls_total",
                                     {"target": "catalog", "outcome": "bulkhead_full"}) == 1


async def test_unresolvable_service_is_unavailable(
        session: aiohttp.ClientSession, server: Server) -> None:
    class NoInstances:
        async def resolve_url(self, url: str) -> str:
            raise ServiceUnavailable("no live instance of 'catalog' in the registry")

    c = ServiceClient(lambda: session, NoInstances(), retries=1, backoff_base_s=0.001)
    with pytest.raises(UpstreamUnavailable) as caught:
        await c.get("http://catalog/x")
    assert "no live instance" in caught.value.reason


async def test_a_registry_that_cannot_answer_neither_trips_the_breaker_nor_is_retried(
        session: aiohttp.ClientSession, server: Server) -> None:
    """A lookup failure says nothing about the target: opening its breaker would refuse
    calls to a healthy service once the registry is back. Discovery waited as long as it
    should already, so the call fails at once rather than asking again."""

    class RegistryDown(FakeResolver):
        down = True

        async def resolve_url(self, url: str) -> str:
            self.resolved.append(url)
            if self.down:
                raise ServiceUnavailable("cannot resolve 'catalog': no answer within 1s")
            return await super().resolve_url(url)

    resolver = RegistryDown(server.port)
    c = ServiceClient(lambda: session, resolver, retries=2, backoff_base_s=0.001)
    for _ in range(BreakerSettings().consecutive_failures + 2):
        with pytest.raises(UpstreamUnavailable) as caught:
            await c.get("http://catalog/x")
        assert not isinstance(caught.value, CircuitOpen)
        assert "cannot resolve" in caught.value.reason
    assert len(resolver.resolved) == BreakerSettings().consecutive_failures + 2
    assert c.breaker("catalog").state == CircuitBreaker.CLOSED
    resolver.down = False
    assert (await c.get("http://catalog/x")).status == 200


class _Registry:
    """A registry whose listing the test changes: an instance restarted on another port."""

    def __init__(self, *instances: Instance) -> None:
        self.listing = list(instances)
        self.listed = 0

    async def instances(self) -> list[Instance]:
        self.listed += 1
        return list(self.listing)


def _instance(port: int) -> Instance:
    now = time.time()
    return Instance(service="catalog", instance_id="catalog-1", host="127.0.0.1", port=port,
                    pid=1, started_at=now, heartbeat_at=now)


async def test_an_instance_that_refuses_the_connection_is_forgotten_and_any_call_tried_again(
        session: aiohttp.ClientSession, server: Server) -> None:
    # catalog-1 was killed and came back on another port; discovery still lists the old one
    # (its listing is served at once and refreshed behind the call).
    dead_port = free_port()
    registry = _Registry(_instance(dead_port))
    resolver = Resolver(lambda: registry)  # type: ignore[arg-type, return-value]
    await resolver.warm()
    registry.listing = [_instance(server.port)]
    c = ServiceClient(lambda: session, resolver, retries=0, backoff_base_s=0.001)
    # A POST without an Idempotency-Key is never retried once sent; this one never was.
    r = await c.post("http://catalog/api/catalog/products", json={"a": 1})
    assert r.status == 200 and server.upstream.hits["POST /api/catalog/products"] == 1
    assert [i.port for i in resolver.known("catalog")] == [server.port]


async def test_a_call_is_tried_once_more_after_a_refused_connection_not_forever(
        session: aiohttp.ClientSession) -> None:
    dead = _Registry(_instance(free_port()))
    resolver = Resolver(lambda: dead)  # type: ignore[arg-type, return-value]
    c = ServiceClient(lambda: session, resolver, retries=0, backoff_base_s=0.001)
    with pytest.raises(UpstreamUnavailable):
        await c.post("http://catalog/api/catalog/products", json={"a": 1})
    assert dead.listed == 2  # the first lookup, and one after the refused connection


async def test_service_client_is_built_from_the_service_settings(
        session: aiohttp.ClientSession, server: Server) -> None:
    """cart and orders build theirs with ``chassis.app.service_client``: timeout, retries,
    the caller's name and the metrics all come from the app."""
    from typing import ClassVar

    from chassis.app import ServiceContext, service_client
    from chassis.metrics import HttpMetrics
    from chassis.settings import UpstreamSettings
    from pydantic_settings import SettingsConfigDict

    class ToySettings(UpstreamSettings):
        model_config = SettingsConfigDict(env_prefix="TOY_", extra="ignore", frozen=True)
        service_name: ClassVar[str] = "toy"

    settings = ToySettings(upstream_timeout_s=0.1, upstream_retries=1)
    ctx = ServiceContext(settings=settings, metrics=HttpMetrics("toy"))
    ctx.http = session
    ctx.resolver = FakeResolver(server.port)  # type: ignore[assignment]
    c = service_client(ctx, settings)
    assert (await c.get("http://catalog/items")).ok
    assert server.upstream.seen_headers[0]["Mercato-Caller"] == "toy"
    with pytest.raises(UpstreamUnavailable) as caught:
        await c.get("http://catalog/slow")
    assert "within 0.1s" in caught.value.reason
    assert server.upstream.hits["GET /slow"] == 2  # one retry, as the settings say
    assert ctx.metrics.registry.get_sample_value(
        "http_client_retries_total", {"target": "catalog", "service": "toy"}) == 1


@pytest.fixture
def spans() -> tuple[Any, Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_a_call_is_a_client_span_whose_context_the_callee_receives(
        server: Server, spans: tuple[Any, Any]) -> None:
    provider, exporter = spans
    async with aiohttp.ClientSession(trace_configs=[client_trace_config(provider)]) as http:
        with provider.get_tracer("t").start_as_current_span("caller") as caller:
            url = f"http://user:secret@127.0.0.1:{server.port}/api/x?card=4242"
            async with http.post(url, json={}) as resp:
                assert resp.status == 200
            assert trace.get_current_span() is caller  # the client span's context is left
    client_span = next(s for s in exporter.get_finished_spans() if s.name == "POST")
    assert client_span.kind == trace.SpanKind.CLIENT
    assert client_span.parent is not None
    assert client_span.parent.span_id == caller.get_span_context().span_id
    assert dict(client_span.attributes or {}) == {
        "http.request.method": "POST", "url.full": f"http://127.0.0.1:{server.port}/api/x",
        "server.address": "127.0.0.1", "server.port": server.port,
        "http.response.status_code": 200}
    assert client_span.status.status_code == trace.StatusCode.UNSET
    _, trace_id, span_id, _ = server.upstream.seen_headers[0]["traceparent"].split("-")
    assert trace_id == format(client_span.context.trace_id, "032x")
    assert span_id == format(client_span.context.span_id, "016x")  # the callee's parent


async def test_a_client_span_is_an_error_for_an_error_answer_or_a_failed_call(
        server: Server, spans: tuple[Any, Any]) -> None:
    provider, exporter = spans
    server.upstream.status = 404
    async with aiohttp.ClientSession(trace_configs=[client_trace_config(provider)]) as http:
        async with http.get(f"http://127.0.0.1:{server.port}/missing") as resp:
            assert resp.status == 404
        with pytest.raises(aiohttp.ClientConnectorError):
            async with http.get(f"http://127.0.0.1:{free_port()}/"):
                pass
    answered, refused = exporter.get_finished_spans()
    assert answered.status.status_code == trace.StatusCode.ERROR
    assert (answered.attributes or {})["error.type"] == "404"
    assert refused.status.status_code == trace.StatusCode.ERROR
    assert (refused.attributes or {})["error.type"] == "ClientConnectorError"
    assert [e.name for e in refused.events] == ["exception"]


async def test_a_traced_session_makes_client_spans_beside_its_own_trace_configs(
        server: Server, spans: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from chassis import http_client
    from chassis.http_client import traced_session

    provider, exporter = spans
    monkeypatch.setattr(http_client, "client_trace_config", lambda: client_trace_config(provider))
    theirs: list[str] = []

    async def on_start(*_: Any) -> None:
        theirs.append("start")

    own = aiohttp.TraceConfig()
    own.on_request_start.append(on_start)
    async with traced_session(trace_configs=[own]) as http:
        async with http.get(f"http://127.0.0.1:{server.port}/x") as resp:
            assert resp.status == 200
    assert theirs == ["start"]
    assert [s.name for s in exporter.get_finished_spans()] == ["GET"]
    assert "traceparent" in server.upstream.seen_headers[0]
