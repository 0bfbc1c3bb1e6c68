"""Typed wiring (ADR 0025): a service's bootstrap sets its dependencies once with
``ctx.wire``, handlers read them typed through ``ctx.wiring``; before bootstrap ran, and
after it ended, reading them is a clear error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, ClassVar

import pytest
from chassis.app import ServiceContext, create_service_app
from chassis.deps import get_ctx
from chassis.metrics import HttpMetrics
from chassis.settings import ServiceSettings
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient


class ToySettings(ServiceSettings):
    service_name: ClassVar[str] = "toy"
    greeting: str = "hello"


@dataclass(frozen=True)
class ToyWiring:
    greeter: str


Context = Annotated[ServiceContext[ToySettings, ToyWiring], Depends(get_ctx)]


def toy_settings() -> ToySettings:
    return ToySettings(nats_url="", database_url="")


def test_the_wiring_is_an_error_before_bootstrap_set_it() -> None:
    ctx: ServiceContext[ToySettings, ToyWiring] = ServiceContext(
        settings=toy_settings(), metrics=HttpMetrics("toy"))
    with pytest.raises(RuntimeError, match="toy is not wired: its bootstrap has not run"):
        _ = ctx.wiring
    assert not ctx.wired
    assert ctx.wire(ToyWiring("hi")) == ToyWiring("hi")
    assert ctx.wired and ctx.wiring.greeter == "hi"
    with pytest.raises(RuntimeError, match="wired already"):
        ctx.wire(ToyWiring("again"))
    assert ctx.wiring.greeter == "hi"


def test_handlers_read_the_wiring_bootstrap_set_and_a_restart_wires_afresh() -> None:
    starts: list[str] = []
    router = APIRouter()

    @router.get("/greet")
    async def greet(ctx: Context) -> dict[str, str]:
        return {"said": f"{ctx.settings.greeting}, {ctx.wiring.greeter}"}

    @asynccontextmanager
    async def bootstrap(ctx: ServiceContext[ToySettings, ToyWiring]) -> AsyncIterator[None]:
        starts.append("start")
        ctx.wire(ToyWiring(f"start {len(starts)}"))
        yield

    app = create_service_app(toy_settings(), routers=[router], bootstrap=bootstrap)
    ctx: ServiceContext[ToySettings, ToyWiring] = app.state.ctx
    with TestClient(app) as client:
        assert client.get("/greet").json() == {"said": "hello, start 1"}
    with pytest.raises(RuntimeError, match="not wired"):  # bootstrap ended: unwired
        _ = ctx.wiring
    assert not ctx.wired
    with TestClient(app) as client:  # started again: wired again, not "wired already"
        assert client.get("/greet").json() == {"said": "hello, start 2"}
