"""The simulators run on uvloop, as the services do (ADR 0050): the platform's CPU per order
counts theirs too."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvloop
from aiohttp import web
from simulators.payment_provider import __main__ as provider_main

from simulators import mail_sink


def test_the_mail_sink_runs_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        loops.append(asyncio.get_running_loop())

    monkeypatch.setattr(mail_sink, "main", main)
    mail_sink.run()
    assert len(loops) == 1 and isinstance(loops[0], uvloop.Loop)


def test_the_payment_provider_runs_on_uvloop(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Any) -> None:
    given: dict[str, Any] = {}

    def run_app(app: web.Application, **kwargs: Any) -> None:
        given.update(kwargs)

    monkeypatch.setattr(web, "run_app", run_app)
    monkeypatch.setenv("PAYMENTS_PROVIDER_DATA_DIR", str(tmp_path))
    provider_main.main()
    try:
        assert isinstance(given["loop"], uvloop.Loop)
    finally:
        given["loop"].close()
