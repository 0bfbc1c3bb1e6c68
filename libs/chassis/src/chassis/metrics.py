"""Prometheus metrics: the service's registry, and per route request count, errors (5xx) and
a latency histogram.

``ServiceRegistry`` adds ``service="<name>"`` to every series it serves (the chassis's own,
a service's, the process's), so queries group by one label wherever the service runs and
nothing else has to remember to set it. The metric names are listed in
``chassis.metric_catalogue``.

A pure ASGI middleware (not BaseHTTPMiddleware) keeps the per-request cost low; the route
label is the route template, so ``/products/{product_id}`` is one series, not one per id.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chassis.metric_catalogue import HTTP_DURATION, HTTP_ERRORS, HTTP_REQUESTS

_SKIP = ("/metrics", "/health/live", "/health/ready")

# A counter's ``_created`` twin doubles the series for a timestamp no query here uses.
disable_created_metrics()


class ServiceRegistry(CollectorRegistry):
    """A registry whose every series carries ``service``. Added when served (a scrape, a
    few times a minute), not when counted, so counting costs nothing more."""

    def __init__(self, service: str, *, process: bool = True) -> None:
        super().__init__(auto_describe=True)
        self.service = service
        if process:
            ProcessCollector(registry=self)

    def collect(self) -> Iterable[Metric]:
        for family in super().collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [
                s if "service" in s.labels
                else s._replace(labels={"service": self.service, **s.labels})
                for s in family.samples]
            yield labelled


class HttpMetrics:
    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else ServiceRegistry(service)
        self.requests = HTTP_REQUESTS.counter(self.registry)
        self.errors = HTTP_ERRORS.counter(self.registry)
        self.latency = HTTP_DURATION.histogram(self.registry)
        self.service = service

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        code = str(status)
        self.requests.labels(method, route, code).inc()
        if status >= 500:
            self.errors.labels(method, route, code).inc()
        self.latency.labels(method, route).observe(seconds)

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
