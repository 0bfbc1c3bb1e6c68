"""The simulators' bearer-token check: 401 without the token, /health always open."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from chassis.sidedoor import bearer_header, require_token


def _app(token: str | None) -> web.Application:
    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[require_token(token)])
    app.router.add_get("/messages", ok)
    app.router.add_get("/health", ok)
    return app


async def test_calls_without_the_token_are_refused_health_is_not() -> None:
    async with TestClient(TestServer(_app("s3cret"))) as client:
        assert (await client.get("/messages")).status == 401
        for header in ({"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"},
                       {"Authorization": "Basic s3cret"}):
            resp = await client.get("/messages", headers=header)
            assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
        assert (await client.get("/messages", headers=bearer_header("s3cret"))).status == 200
        assert (await client.get("/health")).status == 200


async def test_no_token_leaves_the_door_open_for_a_simulator_run_by_hand() -> None:
    async with TestClient(TestServer(_app(None))) as client:
        assert (await client.get("/messages")).status == 200
    assert bearer_header(None) == {}
