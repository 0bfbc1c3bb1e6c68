"""The process entry: what start-up built is frozen out of the garbage collector's reach;
idle connections are closed by the callers first; the server wakes once a second, and at once
when told to exit."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import aiohttp
import pytest
import uvicorn
from chassis import serve
from chassis.app import create_service_app
from chassis.serve import (
    CLIENT_KEEP_ALIVE_S,
    SERVER_KEEP_ALIVE_S,
    Server,
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

    def run(server: uvicorn.Server, sockets: Any = None) -> None:
        seen["frozen"] = gc.get_freeze_count()
        seen["socket"] = sockets[0]

    monkeypatch.setattr(uvicorn.Server, "run", run)
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


@asynccontextmanager
async def serving(server: uvicorn.Server) -> AsyncIterator[str]:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    server.config.app = app
    sock = bind_socket("127.0.0.1", 0)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/ping"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


async def test_the_server_wakes_once_a_second_not_ten_times() -> None:
    # uvicorn's own loop ticks every 0.1 s: ~1.2 ms of CPU a second per service (ADR 0049).
    server = Server(uvicorn_config(FastAPI()))
    ticks: list[int] = []
    on_tick = server.on_tick

    async def counted(counter: int) -> bool:
        ticks.append(counter)
        return await on_tick(counter)

    server.on_tick = counted  # type: ignore[method-assign]
    async with serving(server) as url, aiohttp.ClientSession() as http:
        async with http.get(url) as first:
            first_date = first.headers["date"]
        await asyncio.sleep(2.5)
        async with http.get(url) as later:
            assert later.status == 200
            assert later.headers["date"] != first_date, "the Date header is still refreshed"
    # Three or four ticks in 2.5 s (and one at the exit), against 25 with uvicorn's loop.
    assert 2 <= len(ticks) <= 6, ticks


@pytest.mark.parametrize("how", ["signal", "thread", "attribute"])
async def test_told_to_exit_the_server_stops_without_waiting_for_its_tick(
        monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    monkeypatch.setattr(serve, "DATE_HEADER_EVERY_S", 3600.0)  # only the wake-up ends the wait
    # uvicorn handles SIGTERM while it serves, then raises it again to the handler before it.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server = Server(uvicorn_config(FastAPI()))
        async with serving(server) as url, aiohttp.ClientSession() as http:
            async with http.get(url) as answer:
                assert answer.status == 200
            await asyncio.sleep(0.1)  # the main loop is waiting now
            if how == "signal":
                signal.raise_signal(signal.SIGTERM)
            elif how == "thread":
                await asyncio.get_running_loop().run_in_executor(
                    None, setattr, server, "should_exit", True)
            # "attribute": serving() sets should_exit, as tests and uvicorn's lifespan do.
        # serving() waits at most 30 s for the server to end: far less than an hour's tick.
    finally:
        signal.signal(signal.SIGTERM, previous)
