"""The process entry: what start-up built is frozen out of the garbage collector's reach."""

from __future__ import annotations

import gc
from typing import Any, ClassVar

import pytest
import uvicorn
from chassis.app import create_service_app
from chassis.serve import run_service
from chassis.settings import ServiceSettings
from fastapi import FastAPI


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
