"""The app factory's built-ins: health, metrics, problem+json, body limit, offline docs,
security headers."""

from __future__ import annotations

from typing import ClassVar

import pytest
from chassis.app import create_service_app
from chassis.errors import Conflict, NotFound
from chassis.security_headers import PERSONAL_DATA
from chassis.settings import ServiceSettings
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel


class DemoSettings(ServiceSettings):
    service_name: ClassVar[str] = "demo"


class Item(BaseModel):
    name: str
    quantity: int


def build_app(**overrides: object) -> TestClient:
    router = APIRouter(prefix="/api/demo")

    @router.post("/items", status_code=201)
    async def create(item: Item) -> Item:
        if item.name == "taken":
            raise Conflict("that name is taken")
        return item

    @router.get("/items/{item_id}")
    async def read(item_id: int) -> dict[str, int]:
        raise NotFound(f"no item {item_id}")

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unexpected")

    # One person's data, declared once for the whole router.
    mine = APIRouter(prefix="/api/demo/me", dependencies=[PERSONAL_DATA])

    @mine.get("")
    async def me() -> dict[str, str]:
        return {"email": "ann@example.com"}

    @mine.get("/cached")
    async def cached() -> JSONResponse:
        return JSONResponse({"email": "ann@example.com"},
                            headers={"Cache-Control": "public, max-age=600"})

    @mine.get("/missing")
    async def missing() -> None:
        raise NotFound("nothing here")

    settings = DemoSettings(nats_url="", database_url="", max_body_bytes=1024, **overrides)
    app = create_service_app(settings, routers=[router, mine])
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def client() -> TestClient:
    with build_app() as c:
        yield c


def test_health_and_ready_without_dependencies(client: TestClient) -> None:
    assert client.get("/health/live").json()["status"] == "alive"
    assert client.get("/health/ready").status_code == 200


def test_validation_error_is_problem_json_422_without_echoing_input(client: TestClient) -> None:
    resp = client.post("/api/demo/items", json={"name": "secret-password", "quantity": "x"})
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["status"] == 422 and body["errors"][0]["loc"] == ["body", "quantity"]
    assert "secret-password" not in resp.text


def test_malformed_json_is_422(client: TestClient) -> None:
    resp = client.post("/api/demo/items", content=b"{not json",
                       headers={"content-type": "application/json"})
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"


def test_domain_errors_map_to_status(client: TestClient) -> None:
    assert client.get("/api/demo/items/7").status_code == 404
    resp = client.post("/api/demo/items", json={"name": "taken", "quantity": 1})
    assert resp.status_code == 409 and resp.json()["detail"] == "that name is taken"


def test_unexpected_error_is_500_problem(client: TestClient) -> None:
    resp = client.get("/api/demo/boom")
    assert resp.status_code == 500
    assert resp.json()["title"] == "Internal server error"


def test_oversize_body_is_413(client: TestClient) -> None:
    resp = client.post("/api/demo/items", content=b"x" * 4096,
                       headers={"content-type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["status"] == 413


def test_metrics_count_requests_per_route_template(client: TestClient) -> None:
    client.get("/api/demo/items/1")
    client.get("/api/demo/items/2")
    text = client.get("/metrics").text
    assert 'route="/api/demo/items/{item_id}"' in text
    series = ('http_requests_total{method="GET",route="/api/demo/items/{item_id}",'
              'service="demo",status="404"} 2.0')
    assert series in text
    assert "http_request_duration_seconds_bucket" in text


def test_every_series_names_its_service_and_only_catalogued_metrics_are_served(
        client: TestClient) -> None:
    """Queries group by ``service`` wherever the service runs: the registry adds it to every
    series, the process's too; and what is served is what the catalogue lists (the alert
    rules and dashboards are checked against the catalogue)."""
    from chassis.metric_catalogue import DEPENDENCY_UP, HTTP_METRICS, PROCESS_METRICS
    from prometheus_client.parser import text_string_to_metric_families

    client.get("/api/demo/boom")
    families = list(text_string_to_metric_families(client.get("/metrics").text))
    samples = [s for f in families for s in f.samples]
    assert samples and all(s.labels.get("service") == "demo" for s in samples)
    assert {s.name for s in samples} >= {"http_request_errors_total",
                                         "process_start_time_seconds"}
    assert not [s.name for s in samples if s.name.endswith("_created")]
    served = {f.name for f in families}
    catalogued = {spec.name.removesuffix("_total") for spec in (*HTTP_METRICS, DEPENDENCY_UP,
                                                                *PROCESS_METRICS)}
    assert served == catalogued


def test_docs_are_served_offline(client: TestClient) -> None:
    html = client.get("/api/demo/docs").text
    assert "/api/demo/docs/static/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    assert client.get("/api/demo/docs/static/swagger-ui-bundle.js").status_code == 200
    assert client.get("/api/demo/openapi.json").json()["info"]["title"] == "mercato demo"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/health/live", 200), ("GET", "/metrics", 200), ("GET", "/api/demo/docs", 200),
    ("GET", "/api/demo/openapi.json", 200), ("GET", "/api/demo/items/1", 404),
    ("POST", "/api/demo/items", 422), ("GET", "/api/demo/boom", 500),
    ("GET", "/api/demo/nowhere", 404), ("GET", "/api/demo/docs/static/swagger-ui.css", 200),
])
def test_every_answer_says_nosniff(client: TestClient, method: str, path: str,
                                   status: int) -> None:
    resp = client.request(method, path)
    assert resp.status_code == status
    assert resp.headers.get_list("x-content-type-options") == ["nosniff"]


def test_oversize_bodies_say_nosniff_too(client: TestClient) -> None:
    resp = client.post("/api/demo/items", content=b"x" * 2048)
    assert resp.status_code == 413 and resp.headers["x-content-type-options"] == "nosniff"


def test_personal_data_is_never_stored_by_caches(client: TestClient) -> None:
    for path in ("/api/demo/me", "/api/demo/me/cached", "/api/demo/me/missing"):
        resp = client.get(path)
        assert resp.headers.get_list("cache-control") == ["no-store"], path
    # Routes that did not declare it are left alone.
    assert "cache-control" not in client.get("/api/demo/items/1").headers


def test_the_docs_page_has_a_csp_allowing_exactly_its_inline_script(
        client: TestClient) -> None:
    import base64
    import hashlib
    import re

    resp = client.get("/api/demo/docs")
    csp = resp.headers["content-security-policy"]
    assert resp.headers["x-frame-options"] == "DENY"
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["frame-ancestors"] == "'none'"
    assert directives["default-src"] == "'none'"
    assert "unsafe-inline" not in directives["script-src"]
    assert "unsafe-eval" not in directives["script-src"]
    # Swagger UI starts from one inline script: the policy names exactly its hash, so the
    # page works and no injected script would.
    (inline,) = re.findall(r"<script>(.*?)</script>", resp.text, flags=re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert directives["script-src"] == f"'self' 'sha256-{digest}'"
    # The bundle and the spec it fetches come from the service itself.
    assert re.search(r'<script src="/api/demo/docs/static/swagger-ui-bundle.js">', resp.text)
    assert "'self'" in directives["connect-src"]
    # Only the docs page: JSON answers need no CSP.
    assert "content-security-policy" not in client.get("/api/demo/openapi.json").headers


def test_placeholder_secret_refused_outside_development() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        DemoSettings(environment="production",
                     database_url="postgresql+asyncpg://demo:changeme@db/demo")
    DemoSettings(environment="development",
                 database_url="postgresql+asyncpg://demo:changeme@db/demo")


def test_a_request_is_one_span_without_operation_spans() -> None:
    """Every span is paid for three times (the service, its exporter, the console): a request
    is one server span, not four (FastAPI's dependency, endpoint and serialization spans)."""
    from chassis.tracing import configure_tracing
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exported = InMemorySpanExporter()
    configure_tracing("demo", "demo-1", None).add_span_processor(SimpleSpanProcessor(exported))
    with build_app() as c:
        assert c.post("/api/demo/items", json={"name": "pen", "quantity": 2}).status_code == 201
    names = [s.name for s in exported.get_finished_spans()]
    assert names == ["POST /api/demo/items"], names


def test_the_outbox_publishes_without_a_span_a_message_unless_asked() -> None:
    """A consumer's span continues the staging span by default (one span a hop); the
    relay's PRODUCER spans come with <SERVICE>_TRACE_PUBLISH (`mercato up --trace-publish`)."""
    assert DemoSettings(nats_url="", database_url="").trace_publish is False
    assert DemoSettings(nats_url="", database_url="", trace_publish=True).trace_publish
