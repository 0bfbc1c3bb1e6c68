"""A NATS connection that a service can start without: it connects in the background.

A service must come up (and answer /health/live) while NATS is still starting or briefly
gone; readiness reports NATS until the connection is there, and nats-py reconnects after.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import structlog
from nats.aio.client import Client as NATS

from chassis.broker_permissions import inbox_prefix
from chassis.settings import ServiceSettings

log = structlog.get_logger("chassis.nats")


def connect_options(settings: ServiceSettings) -> dict[str, Any]:
    """The service's credentials for ``nats.connect``: its NKey seed (if any) and its own
    reply-inbox prefix, the only inbox its broker permissions let it subscribe to."""
    options: dict[str, Any] = {"inbox_prefix": inbox_prefix(settings.service_name)}
    if settings.nats_nkey_seed is not None:
        options["nkeys_seed_str"] = settings.nats_nkey_seed.get_secret_value()
    return options


class NatsConnection:
    def __init__(self, url: str, *, name: str, options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.name = name
        self._options = options or {}
        self.nc: NATS | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._on_connect: list[Callable[[NATS], Awaitable[None]]] = []

    def on_connect(self, callback: Callable[[NATS], Awaitable[None]]) -> None:
        """Run ``callback`` once the first connection is up (e.g. register in the registry)."""
        self._on_connect.append(callback)

    @property
    def is_connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect_forever(), name=f"nats-connect-{self.name}")

    async def wait_connected(self, timeout: float) -> NATS:
        await asyncio.wait_for(self._connected.wait(), timeout)
        assert self.nc is not None
        return self.nc

    async def _connect_forever(self) -> None:
        delay = 0.2
        while True:
            try:
                self.nc = await nats.connect(
                    self.url, name=self.name, connect_timeout=2, allow_reconnect=True,
                    max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                    error_cb=self._on_error, disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected, **self._options)
                break
            except Exception as exc:
                log.warning("nats_connect_failed", url=self.url, error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._connected.set()
        log.info("nats_connected", url=self.url)
        for callback in self._on_connect:
            try:
                await callback(self.nc)
            except Exception:
                log.exception("nats_on_connect_failed")

    async def _on_error(self, exc: Exception) -> None:
        log.warning("nats_error", error=str(exc))

    async def _on_disconnected(self) -> None:
        log.warning("nats_disconnected")

    async def _on_reconnected(self) -> None:
        log.info("nats_reconnected")

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), 3)
