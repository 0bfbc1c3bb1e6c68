"""OpenTelemetry tracing: one provider per process; OTLP export only when configured.

Spans are recorded even without an exporter so logs carry trace and span ids and W3C trace
context flows to downstream calls.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_provider: TracerProvider | None = None


def configure_tracing(service: str, instance: str, otlp_endpoint: str | None) -> TracerProvider:
    """Install the process-wide tracer provider once; later calls return the same one."""
    global _provider
    if _provider is not None:
        return _provider
    provider = TracerProvider(resource=Resource.create(
        {"service.name": service, "service.instance.id": instance}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def instrument_app(app: Any, engine: Any | None, *, exporting: bool) -> None:
    """Database spans, only when spans are exported; request spans come from FastAPI's
    native telemetry (see app.py).

    A span per SQL statement cost ~0.15 ms CPU on top of ~0.33 ms for the statement itself
    (measured here: +45 %), and the order saga runs dozens of statements per order. Without
    an exporter nobody can see those spans; the request and message spans that carry trace
    context (and the ids in the logs) are kept either way."""
    if engine is not None and exporting:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine)


def instrument_http_client() -> None:
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

    instrumentor = AioHttpClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


def shutdown_tracing() -> None:
    if _provider is not None:
        _provider.force_flush(timeout_millis=2000)
