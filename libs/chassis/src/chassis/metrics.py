"""Prometheus metrics per route: request count, errors (5xx) and a latency histogram.

A pure ASGI middleware (not BaseHTTPMiddleware) keeps the per-request cost low; the route
label is the route template, so ``/products/{product_id}`` is one series, not one per id.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SKIP = ("/metrics", "/health/live", "/health/ready")


class HttpMetrics:
    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        labels = ["service", "method", "route", "status"]
        self.requests = Counter("http_requests_total", "HTTP requests served", labels,
                                registry=self.registry)
        self.errors = Counter("http_request_errors_total", "HTTP requests answered with 5xx",
                              labels, registry=self.registry)
        self.latency = Histogram(
            "http_request_duration_seconds", "HTTP request latency", ["service", "method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry)
        self.service = service

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        code = str(status)
        self.requests.labels(self.service, method, route, code).inc()
        if status >= 500:
            self.errors.labels(self.service, method, route, code).inc()
        self.latency.labels(self.service, method, route).observe(seconds)

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Observes every request; also names the answering instance in ``x-mercato-instance``
    (one header append here is cheaper than another middleware layer), which tells operators
    and tests which replica behind the edge served a request."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, instance: str = "") -> None:
        self.app = app
        self.metrics = metrics
        self.instance_header = (b"x-mercato-instance", instance.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _SKIP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), self.instance_header]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], template, status, time.perf_counter() - started)
