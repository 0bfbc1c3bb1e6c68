"""A NATS connection that a service can start and keep running without.

A service must come up (and serve) while NATS is still starting, gone, or hung: it connects
in the background, nats-py reconnects after an outage, and the work that needs the broker
(the registry entry, streams, relay and consumers) is set up once the connection is there,
retried until it succeeds. Readiness reports the broker as a degraded dependency meanwhile;
it never stops the service from taking requests (writes wait in the outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import nats
import structlog
from nats.aio.client import Client as NATS

from chassis.broker_permissions import inbox_prefix
from chassis.settings import ServiceSettings

log = structlog.get_logger("chassis.nats")

# A broker that stops answering (hung, or the network dropped it silently) shows up only when
# pings go unanswered. nats-py's default (a ping every 2 minutes, 2 outstanding) took over 4
# minutes to notice; with these it reconnects after about 15 s of silence.
PING_INTERVAL_S = 5
MAX_OUTSTANDING_PINGS = 3


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
        self._set_up = asyncio.Event()
        self._on_connect: list[Callable[[NATS], Awaitable[None]]] = []
        self._on_reconnect: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._background: set[asyncio.Task[None]] = set()

    def on_connect(self, callback: Callable[[NATS], Awaitable[None]]) -> None:
        """Run ``callback`` once the first connection is up (e.g. register in the registry).

        A callback that raises is run again (with backoff) until it succeeds, so it must be
        safe to repeat: the broker may drop out half-way through it.
        """
        self._on_connect.append(callback)

    def on_reconnect(self, callback: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``callback`` (in the background) each time the connection comes back."""
        self._on_reconnect.append(callback)

    @property
    def is_connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    @property
    def is_set_up(self) -> bool:
        """Connected once and every ``on_connect`` callback has succeeded."""
        return self._set_up.is_set()

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
                    ping_interval=PING_INTERVAL_S, max_outstanding_pings=MAX_OUTSTANDING_PINGS,
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
            await self._until_done(callback, self.nc)
        self._set_up.set()

    async def _until_done(self, callback: Callable[[NATS], Awaitable[None]], nc: NATS) -> None:
        # Without the retry, a broker that dropped out during start-up (a stream declaration
        # timing out) left the service unregistered, its relay and consumers never started,
        # for as long as the process lived.
        delay = 0.2
        while True:
            try:
                await callback(nc)
                return
            except Exception as exc:
                log.warning("nats_on_connect_failed", callback=getattr(callback, "__name__", ""),
                            error=f"{type(exc).__name__}: {exc}"[:300], retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _on_error(self, exc: Exception) -> None:
        log.warning("nats_error", error=str(exc))

    async def _on_disconnected(self) -> None:
        log.warning("nats_disconnected")

    async def _on_reconnected(self) -> None:
        log.info("nats_reconnected")
        for callback in self._on_reconnect:
            task: asyncio.Task[None] = asyncio.get_running_loop().create_task(callback())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), 3)
