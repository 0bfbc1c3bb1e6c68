"""The process entry: what start-up built is frozen out of the garbage collector's reach;
idle connections are closed by the callers first."""

from __future__ import annotations

import asyncio
import gc
from typing import Any, ClassVar

import aiohttp
import pytest
import uvicorn
from chassis.app import create_service_app
from chassis.serve import (
    CLIENT_KEEP_ALIVE_S,
    SERVER_KEEP_ALIVE_S,
    bind_socket,
    run_service,
    uvicorn_config,
)
from chassis.settings import ServiceSettings
from fastapi import FastAPI, Request


class DemoSettings(ServiceSettings):
    service_name: ClassVar[str] = "demo"


def test_the_heap_built_at_start_up_is_frozen_before_serving(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    long_lived: list[list[int]] = []

    def app_factory(settings: ServiceSettings) -> FastAPI:
        # Start-up state that lives as long as the process (routes, models, caches).
        long_lived.extend([i] for i in range(50_000))
        return create_service_app(settings, routers=[])

    def serve(server: uvicorn.Server, sockets: Any = None) -> None:
        seen["frozen"] = gc.get_freeze_count()
        seen["socket"] = sockets[0]

    monkeypatch.setattr(uvicorn.Server, "run", serve)
    monkeypatch.setattr("chassis.serve.signal.signal", lambda *_: None)  # not this process's
    gc.unfreeze()
    try:
        run_service(DemoSettings(nats_url="", database_url="", port=0), app_factory, None)
        # Every full collection from now on skips those objects.
        assert seen["frozen"] >= len(long_lived) > 0
    finally:
        gc.unfreeze()
        if "socket" in seen:
            seen["socket"].close()


def test_migrate_only_migrates_and_returns_without_binding_or_serving(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    calls: list[str] = []
    monkeypatch.setattr("chassis.migrations.upgrade_to_head",
                        lambda directory, url: calls.append(f"migrate {url}"))
    monkeypatch.setattr("chassis.serve.bind_socket",
                        lambda *_: calls.append("bind"))  # type: ignore[func-returns-value]
    monkeypatch.setattr(uvicorn.Server, "run", lambda *_, **__: calls.append("serve"))
    settings = DemoSettings(nats_url="", database_url="postgresql+asyncpg://u:p@db/demo",
                            migrate_only=True)
    run_service(settings, lambda s: create_service_app(s, routers=[]), tmp_path)
    assert calls == ["migrate postgresql+asyncpg://u:p@db/demo"]


async def test_a_caller_closes_an_idle_connection_before_the_service_does() -> None:
    # The race behind a spurious 503 ("Can not write request body"): a client reusing a
    # keep-alive connection the server is closing at that instant. The service keeps an idle
    # connection longer than its callers do (aiohttp, the chassis's calls and the
    # supervisor's probes, every 5 s; Envoy 4 s), so the caller always closes it first.
    assert 4 < CLIENT_KEEP_ALIVE_S < SERVER_KEEP_ALIVE_S
    app = FastAPI()

    @app.get("/port")
    async def port(request: Request) -> dict[str, int]:
        assert request.client is not None
        return {"port": request.client.port}

    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn_config(app))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/port"
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        connector = aiohttp.TCPConnector(keepalive_timeout=CLIENT_KEEP_ALIVE_S)
        async with aiohttp.ClientSession(connector=connector) as http:
            async with http.get(url) as first:
                before = (await first.json())["port"]
            await asyncio.sleep(6)  # past uvicorn's default keep-alive (5 s)
            async with http.get(url) as second:
                assert (await second.json())["port"] == before, "the service closed it first"
    finally:
        server.should_exit = True
        await serving
        sock.close()
