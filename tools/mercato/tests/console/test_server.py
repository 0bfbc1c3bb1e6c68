"""The console's door: OTLP only with the ingest token, pages only after the console token,
POSTs only with the CSRF token, bad input a 4xx problem."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from mercato.console.auth import COOKIE, Auth
from mercato.console.server import Console, waterfall
from mercato.console.store import Store
from mercato.runtime.paths import Home

INGEST, LOGIN = "ingest-secret", "login-secret"


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    home = Home(tmp_path / "home")
    home.ensure()
    console = Console(home, Store(home.telemetry_db), Auth(LOGIN, INGEST))
    async with TestClient(TestServer(console.app())) as c:
        yield c


@pytest.mark.asyncio
async def test_otlp_needs_the_ingest_token_and_a_real_body(recorded, client: TestClient) -> None:
    body = recorded("orders")
    headers = {"Content-Type": "application/x-protobuf"}
    assert (await client.post("/v1/traces", data=body, headers=headers)).status == 401
    assert (await client.post("/v1/traces", data=body, headers={
        **headers, "Authorization": f"Bearer {LOGIN}"})).status == 401
    bad = await client.post("/v1/traces", data=b"\xff\xff", headers={
        **headers, "Authorization": f"Bearer {INGEST}"})
    assert bad.status == 400 and bad.content_type == "application/problem+json"
    ok = await client.post("/v1/traces", data=body, headers={
        **headers, "Authorization": f"Bearer {INGEST}"})
    assert ok.status == 200
    api = await client.get("/api/traces", headers={"Authorization": f"Bearer {LOGIN}"})
    assert [t["root_name"] for t in (await api.json())["traces"]] == ["POST /api/orders"]


@pytest.mark.asyncio
async def test_pages_need_a_login_and_posts_a_csrf_token(client: TestClient) -> None:
    assert (await client.get("/api/traces")).status == 401
    page = await client.get("/traces")
    assert "Log in" in await page.text()
    assert (await client.get("/login", params={"token": "wrong"},
                             allow_redirects=False)).status == 401
    login = await client.get("/login", params={"token": LOGIN}, allow_redirects=False)
    assert login.status == 303
    cookie = login.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert "no trace matches" in await (await client.get("/traces")).text()
    # The session cookie alone does not make a POST: a page of another site could send it.
    assert (await client.post("/dead-letters/1/replay")).status == 403
    assert (await client.post("/dead-letters/1/replay",
                              data={"csrf": "forged"})).status == 403
    csrf = Auth(LOGIN, INGEST).csrf
    assert (await client.post("/dead-letters/x/replay", data={"csrf": csrf})).status == 400


@pytest.mark.asyncio
async def test_bad_queries_are_problems_not_errors(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {LOGIN}"}
    for path in ("/api/traces?min_ms=fast", "/api/traces?status=maybe", "/api/traces/xyz",
                 "/api/orders/not-a-uuid/trace", "/api/sagas?status=DONE",
                 "/api/sagas/not-a-uuid"):
        resp = await client.get(path, headers=auth)
        assert resp.status == 400, path
        assert resp.content_type == "application/problem+json", path
    missing = await client.get(f"/api/traces/{'a' * 32}", headers=auth)
    assert missing.status == 404


def test_the_waterfall_puts_children_under_their_parent() -> None:
    spans = [
        {"span_id": "c", "parent_id": "a", "start_ns": 50, "end_ns": 100, "status": 2},
        {"span_id": "a", "parent_id": None, "start_ns": 0, "end_ns": 100, "status": 0},
        {"span_id": "b", "parent_id": "a", "start_ns": 10, "end_ns": 20, "status": 0},
        {"span_id": "d", "parent_id": "gone", "start_ns": 60, "end_ns": 70, "status": 0},
    ]
    rows = waterfall(spans)
    assert [(r["span_id"], r["depth"]) for r in rows] == [("a", 0), ("b", 1), ("c", 1),
                                                           ("d", 0)]
    c = rows[2]
    assert c["offset_pct"] == 50.0 and c["width_pct"] == 50.0 and c["error"]
