"""Traced and measured like the services, without their chassis: a server span per request
(W3C trace context from the caller kept), exported over OTLP/HTTP when an endpoint is
configured, and Prometheus metrics at ``/metrics``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        process_collector.ProcessCollector(registry=self.registry)
        platform_collector.PlatformCollector(registry=self.registry)
        gc_collector.GCCollector(registry=self.registry)
        self.requests = Counter("http_requests_total", "HTTP requests answered",
                                ["service", "method", "route", "status"],
                                registry=self.registry)
        self.errors = Counter("http_request_errors_total", "HTTP requests answered with 5xx",
                              ["service", "method", "route", "status"], registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request duration",
                                 ["service", "method", "route"], registry=self.registry)
        self.checkouts = Counter("legacy_checkouts_total", "Checkouts by outcome",
                                 ["outcome"], registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def configure_tracing(instance: str, endpoint: str | None) -> TracerProvider:
    """The OTLP exporter reads its headers and the sampler from the standard OTEL_*
    variables (the runtime sets them, as for the services)."""
    provider = TracerProvider(resource=Resource.create(
        {"service.name": "legacy", "service.instance.id": instance}))
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")))
    return provider


class Observe:
    """ASGI middleware: one server span and the request metrics per HTTP request. The
    tracer is the application's (``app.state.tracer``, set in its lifespan)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracer: trace.Tracer | None = getattr(scope["app"].state, "tracer", None) \
            if "app" in scope else None
        if scope["type"] != "http" or tracer is None:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        t0 = time.perf_counter()
        with tracer.start_as_current_span(
                f"{method} {scope['path']}", kind=SpanKind.SERVER,
                context=propagate.extract(headers)) as span:
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                route = _route_of(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status["code"])
                if status["code"] >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                self.metrics.requests.labels("legacy", method, route, str(status["code"])).inc()
                if status["code"] >= 500:
                    self.metrics.errors.labels("legacy", method, route,
                                               str(status["code"])).inc()
                self.metrics.latency.labels("legacy", method, route).observe(
                    time.perf_counter() - t0)


def _route_of(scope: Mapping[str, Any]) -> str:
    # The route template, never the raw path: ids would make a series per order.
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"
