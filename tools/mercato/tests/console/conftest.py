"""OTLP bodies made by the real SDK and its exporter's encoder, for the console's tests."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def _recorded(service: str, *, error: bool = False, order_id: str = "") -> bytes:
    """An OTLP/HTTP body as the SDK's exporter sends it: a request span with a consumer
    child, from a real tracer provider."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service,
                                                        "service.instance.id": f"{service}-1"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /api/orders", kind=trace.SpanKind.SERVER):
        with tracer.start_as_current_span(
                "consume x", kind=trace.SpanKind.CONSUMER,
                attributes={"messaging.correlation_id": order_id}) as span:
            span.add_event("saga.compensating", {"saga.reason": "card_declined"})
            if error:
                span.set_status(trace.Status(trace.StatusCode.ERROR, "card_declined"))
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


@pytest.fixture
def recorded():  # type: ignore[no-untyped-def]
    return _recorded
