"""A server span per request, continuing the caller's trace, and the request metrics."""

from __future__ import annotations

from fastapi.testclient import TestClient
from legacy.app import create_app
from legacy.settings import Settings
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_requests_are_spans_of_the_callers_trace_and_counted() -> None:
    # No database is reached: the engine connects lazily and these routes never ask it.
    app = create_app(Settings(database_url="postgresql+asyncpg://x:y@127.0.0.1:9/none"))
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with TestClient(app, raise_server_exceptions=False) as c:
        app.state.tracer = provider.get_tracer("test")
        r = c.get("/health/live", headers={"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"})
        assert r.status_code == 200
        c.get("/shop/nowhere")
        metrics = c.get("/metrics").text
    spans = exporter.get_finished_spans()
    live = next(s for s in spans if s.name == "GET /health/live")
    assert format(live.context.trace_id, "032x") == TRACE
    assert live.attributes["http.response.status_code"] == 200
    assert any(s.name == "GET unmatched" for s in spans)  # raw paths never name a span
    assert ('http_requests_total{method="GET",route="/health/live",service="legacy",'
            'status="200"} 1.0') in metrics
