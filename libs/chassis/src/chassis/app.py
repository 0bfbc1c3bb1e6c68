"""The service app factory: what every mercato service gets without writing it.

``create_service_app`` returns a FastAPI app with health and readiness, Prometheus metrics,
problem+json errors, a body size limit, security headers (nosniff everywhere, no-store on
routes declaring ``PERSONAL_DATA``, a CSP on the docs), JSON logs with trace ids, tracing,
offline API docs, the database, NATS, the registry entry and token verification. A service
adds its routers and a ``bootstrap`` (its wiring) and nothing else.

``ServiceContext[S, W]`` is typed twice by the service (ADR 0025): ``S`` its settings class,
``W`` its wiring, the one frozen object its ``bootstrap`` builds and sets with ``ctx.wire``.
A handler reads both typed, without a downcast or a string key.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import aiohttp
import structlog
import swagger_ui_bundle
from fastapi import APIRouter, FastAPI, Query
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from nats.aio.client import Client as NATS
from starlette.responses import HTMLResponse, JSONResponse, Response

from chassis.auth import KeySource, RemoteJwks, TokenVerifier
from chassis.background import BackgroundTasks
from chassis.db import Database
from chassis.discovery import Resolver
from chassis.errors import install_error_handlers, problem_response
from chassis.health import BrokerMonitor, DependencyGauge, ReadinessCheck, evaluate
from chassis.http_client import ServiceClient, traced_session
from chassis.limits import BodySizeLimitMiddleware
from chassis.logging import configure_logging
from chassis.messaging.inbox import inbox_purger
from chassis.messaging.metrics import MessagingMetrics
from chassis.messaging.runtime import Messaging, MessagingRuntime
from chassis.metrics import HttpMetrics, MetricsMiddleware
from chassis.nats_conn import NatsConnection, connect_options
from chassis.openapi import install_openapi
from chassis.registry import Registration, RegistryClient
from chassis.registry_keys import EntrySigner, TrustedKeys
from chassis.security_headers import SecurityHeadersMiddleware, docs_policy
from chassis.serve import CLIENT_KEEP_ALIVE_S
from chassis.service_identity import CallerSigner, CallerVerifier
from chassis.settings import ServiceSettings, UpstreamSettings
from chassis.tracing import configure_tracing, instrument_app

log = structlog.get_logger("chassis.app")

S = TypeVar("S", bound=ServiceSettings)
W = TypeVar("W")


class _Unwired:
    """The wiring before ``bootstrap`` set it (and after it ended): not None, which a
    service's wiring could be."""


_UNWIRED = _Unwired()


@dataclass
class ServiceContext(Generic[S, W]):
    """Everything a request handler may need; lives on ``app.state.ctx``. ``S`` is the
    service's settings class, ``W`` its wiring (``wire``)."""

    settings: S
    metrics: HttpMetrics
    db: Database | None = None
    nats: NatsConnection | None = None
    registry: RegistryClient | None = None
    resolver: Resolver = field(init=False)
    verifier: TokenVerifier | None = None
    http: aiohttp.ClientSession | None = None
    # Checks a service adds are required: failing, the instance leaves the edge's rotation.
    readiness_checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    messaging: MessagingRuntime | None = None
    broker: BrokerMonitor | None = None
    dependencies: DependencyGauge = field(init=False)
    # This service's identity on its calls to others, and the check of its callers' (made
    # from the registry keys; None without them, and then no caller is ever verified).
    caller_signer: CallerSigner | None = None
    caller_verifier: CallerVerifier | None = None
    # Periodic and long-running work (chassis.background): declared in bootstrap, started
    # once it has run, stopped at shutdown before it is torn down.
    background: BackgroundTasks = field(init=False)
    _wiring: W | _Unwired = field(default=_UNWIRED, init=False, repr=False)

    def __post_init__(self) -> None:
        self.resolver = Resolver(lambda: self.registry)
        self.dependencies = DependencyGauge(self.metrics.registry)
        self.background = BackgroundTasks(self.metrics.registry)

    def wire(self, wiring: W) -> W:
        """Set the service's dependencies, once per start, in its ``bootstrap``; the chassis
        clears them when the bootstrap ended (a restarted app wires afresh)."""
        if not isinstance(self._wiring, _Unwired):
            raise RuntimeError(f"{self.settings.service_name} is wired already: bootstrap "
                               "sets the wiring once")
        self._wiring = wiring
        return wiring

    @property
    def wiring(self) -> W:
        """What ``bootstrap`` built. Read before it ran (or after it ended) it is an error
        that names the cause, not an ``AttributeError`` on None further on."""
        if isinstance(self._wiring, _Unwired):
            raise RuntimeError(f"{self.settings.service_name} is not wired: its bootstrap "
                               "has not run, or has ended")
        return self._wiring

    @property
    def wired(self) -> bool:
        """For what may run before ``bootstrap`` (a key source asked while the app starts)."""
        return not isinstance(self._wiring, _Unwired)

    def _unwire(self) -> None:
        self._wiring = _UNWIRED

    def http_session(self) -> aiohttp.ClientSession:
        if self.http is None:
            raise RuntimeError("the HTTP client exists only while the app runs")
        return self.http

    def require_db(self) -> Database:
        if self.db is None:
            raise RuntimeError("this service has no database_url configured")
        return self.db


# What create_service_app runs at start: the service's typed context in, its wiring set
# (``ctx.wire``) before the yield.
Bootstrap = Callable[[ServiceContext[S, W]], AbstractAsyncContextManager[None]]


def service_client(ctx: ServiceContext[Any, Any], settings: UpstreamSettings) -> ServiceClient:
    """The app's client for calls to other services: resolved through the registry, over
    the app's shared aiohttp session, bounded and retried as ``settings`` say, calling as
    this service, its breakers and latencies on the app's ``/metrics``. Build one per app
    (in ``bootstrap``): breakers and bulkheads are per client."""
    return ServiceClient(ctx.http_session, ctx.resolver, timeout_s=settings.upstream_timeout_s,
                         retries=settings.upstream_retries,
                         service_identity=settings.service_name,
                         caller_signer=ctx.caller_signer, registry=ctx.metrics.registry)


def _not_traced(scope: Any) -> bool:
    return scope.get("path", "") in ("/health/live", "/health/ready", "/metrics")


@asynccontextmanager
async def _no_bootstrap(_: ServiceContext[Any, Any]) -> AsyncIterator[None]:
    yield


def _default_key_source(ctx: ServiceContext[Any, Any]) -> KeySource:
    return RemoteJwks(ctx.settings.jwks_url, ctx.http_session, resolve=ctx.resolver.resolve_url)


def _required_checks(ctx: ServiceContext[Any, Any]) -> dict[str, ReadinessCheck]:
    checks: dict[str, ReadinessCheck] = {}
    if ctx.db is not None:
        checks["database"] = ctx.db.ping
    checks.update(ctx.readiness_checks)
    return checks


def _ops_router(ctx: ServiceContext[Any, Any]) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "alive", "instance": ctx.settings.instance}

    @router.get("/health/ready")
    async def ready(strict: bool = Query(False)) -> Response:
        # Lenient (the edge's health check): can this instance take requests? Strict (start-up):
        # is it fully up, the broker included? See chassis.health.
        result = await evaluate(_required_checks(ctx), ctx.broker, ctx.dependencies,
                                strict=strict)
        if result.ready:
            return JSONResponse({"status": result.status, "checks": result.checks})
        return problem_response(503, "Not ready", "a required dependency is not available",
                                headers={"Retry-After": "2"}, checks=result.checks)

    @router.get("/metrics")
    async def metrics() -> Response:
        # The database's gauge is as fresh as the scrape; the broker's monitor keeps its own.
        await evaluate(_required_checks(ctx), ctx.broker, ctx.dependencies)
        return ctx.metrics.render()

    return router


def _docs_page(settings: ServiceSettings, title: str) -> bytes:
    static = f"{settings.api_prefix}/docs/static"
    return bytes(get_swagger_ui_html(
        openapi_url=f"{settings.api_prefix}/openapi.json", title=f"{title} — API",
        swagger_js_url=f"{static}/swagger-ui-bundle.js",
        swagger_css_url=f"{static}/swagger-ui.css",
        swagger_favicon_url=f"{static}/favicon-32x32.png").body)


def _docs_router(settings: ServiceSettings, page: bytes) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    # Rendered once: the page's CSP names the hash of its inline script, so the bytes
    # served must be exactly the ones hashed.
    @router.get(f"{settings.api_prefix}/docs")
    async def docs() -> HTMLResponse:
        return HTMLResponse(page)

    return router


def create_service_app(
    settings: S,
    *,
    routers: Sequence[APIRouter],
    bootstrap: Bootstrap[S, W] | None = None,
    key_source: Callable[[ServiceContext[S, W]], KeySource] | None = None,
    messaging: Messaging | None = None,
    title: str | None = None,
    description: str = "",
    version: str = "0.1.0",
) -> FastAPI:
    service = settings.service_name
    title = title or f"mercato {service}"
    configure_logging(service, settings.instance, settings.log_level)
    configure_tracing(service, settings.instance, settings.otlp_endpoint)
    ctx: ServiceContext[S, W] = ServiceContext(settings=settings, metrics=HttpMetrics(service))
    db = Database(settings.database_url, pool_size=settings.db_pool_size,
                  application_name=settings.instance) if settings.database_url else None
    ctx.db = db
    if messaging is not None and db is not None:
        ctx.messaging = MessagingRuntime(messaging, db, settings.database_url,
                                         MessagingMetrics(ctx.metrics.registry),
                                         publish_spans=settings.trace_publish)
    # Bad keys stop the service here, at start, rather than at its first registration.
    signer = (EntrySigner(settings.registry_signing_key.get_secret_value())
              if settings.registry_signing_key is not None else None)
    trusted = TrustedKeys(settings.registry_trusted_keys)
    if settings.registry_signing_key is not None:
        ctx.caller_signer = CallerSigner(service, settings.registry_signing_key.get_secret_value())
    if trusted:
        ctx.caller_verifier = CallerVerifier(service, trusted)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registration: Registration | None = None
        background: list[asyncio.Task[Any]] = []
        ctx.http = traced_session(
            connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=60,
                                           keepalive_timeout=CLIENT_KEEP_ALIVE_S),
            timeout=aiohttp.ClientTimeout(total=5, connect=1))
        ctx.verifier = TokenVerifier((key_source or _default_key_source)(ctx),
                                     issuer=settings.jwt_issuer, audience=settings.jwt_audience)
        if settings.nats_url:
            ctx.nats = NatsConnection(settings.nats_url, name=settings.instance,
                                      options=connect_options(settings))
            ctx.broker = broker = BrokerMonitor(
                ctx.nats, ctx.dependencies,
                on_back=ctx.messaging.wake_consumers if ctx.messaging is not None else None,
                answered_at=lambda: registration.acknowledged_at if registration is not None
                else -math.inf)
            background.append(asyncio.create_task(broker.run(), name="broker-monitor"))

            async def on_nats(nc: NATS) -> None:
                # Run again until it succeeds (the broker may drop out half-way): every step
                # is done once.
                nonlocal registration
                if ctx.registry is None:
                    ctx.registry = RegistryClient(nc, signer=signer, trusted=trusted)
                    # Know the other services' instances (and identity's keys) before the
                    # first call needs them: both then survive a later broker outage.
                    background.append(asyncio.create_task(ctx.resolver.warm(),
                                                          name="discovery-warm"))
                    keys = ctx.verifier.key_source if ctx.verifier is not None else None
                    if isinstance(keys, RemoteJwks):
                        background.append(asyncio.create_task(keys.warm(), name="jwks-warm"))
                if ctx.messaging is not None:
                    await ctx.messaging.start(nc)
                if settings.register_instance and registration is None:
                    fresh = Registration(ctx.registry, service=service,
                                         instance_id=settings.instance,
                                         host=settings.host, port=settings.port)
                    await fresh.start()
                    registration = fresh
                await broker.probe()

            async def on_reconnect() -> None:
                # Heartbeats could not be written during the outage: readers (the edge, other
                # services' discovery) see this instance as gone until it beats again.
                if ctx.messaging is not None:
                    ctx.messaging.wake_consumers()
                if registration is not None:
                    await registration.beat_now()
                await broker.probe()

            ctx.nats.on_connect(on_nats)
            ctx.nats.on_reconnect(on_reconnect)
            ctx.nats.start()
        if messaging is not None and db is not None and messaging.consumers:
            # Only the database is needed: the purge runs whether or not the broker is up.
            ctx.background.every(
                "inbox-purge", messaging.inbox_purge_interval_s,
                inbox_purger(db, [c.name for c in messaging.consumers]),
                first_delay_s=messaging.inbox_purge_interval_s)
        try:
            async with (bootstrap or _no_bootstrap)(ctx):
                ctx.background.start()
                try:
                    log.info("service_started", port=settings.port)
                    yield
                finally:
                    await ctx.background.stop()
        finally:
            ctx._unwire()
            for task in background:
                task.cancel()
            await ctx.resolver.close()
            if registration is not None:
                await registration.stop()
            if ctx.messaging is not None:
                await ctx.messaging.stop()
            if ctx.nats is not None:
                await ctx.nats.close()
            await ctx.http.close()
            if db is not None:
                await db.dispose()
            log.info("service_stopped")

    # FastAPI's native OpenTelemetry traces requests (W3C context in, server span, route
    # templates); its metrics and logs stay off: Prometheus and structlog cover those. It
    # replaces opentelemetry-instrumentation-fastapi: running both traced every request twice.
    # One span per request: its operation spans (dependencies, endpoint, serialization) were
    # three more per request, a tenth of an order's spans, each paid for in the service, the
    # exporter and the console; the request span and its children say where time went.
    app = FastAPI(title=title, description=description, version=version, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  openapi_url=f"{settings.api_prefix}/openapi.json",
                  telemetry={"tracing": True, "metrics": False, "logs": False,
                             "operation_spans": False, "exclude": _not_traced})
    app.state.ctx = ctx
    install_error_handlers(app)
    app.include_router(_ops_router(ctx))
    docs_page = _docs_page(settings, title)
    app.include_router(_docs_router(settings, docs_page))
    app.mount(f"{settings.api_prefix}/docs/static",
              StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-static")
    for router in routers:
        app.include_router(router)
    install_openapi(app)
    exporting = bool(settings.otlp_endpoint)
    instrument_app(app, db.engine if db else None,
                   exporting=exporting if settings.trace_sql is None else
                   exporting and settings.trace_sql)
    # Outermost first: metrics see every answer, including 413s.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware, docs_path=f"{settings.api_prefix}/docs",
                       docs_policy=docs_policy(docs_page.decode()))
    app.add_middleware(MetricsMiddleware, metrics=ctx.metrics, instance=settings.instance)
    app.state.settings = settings
    return app
