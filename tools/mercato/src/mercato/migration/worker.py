"""What the migration's background processes share: the data sync
(``mercato.migration.sync``) and the stock split (``mercato.migration.stock``). Each is
supervised beside the monolith with the sync's identity and broker credentials
(``SYNC_*``), holds an advisory lock in the monolith's database while it lives, finds the
services in the registry when their URLs name them (``http://catalog``), and answers the
supervisor's health probes and Prometheus on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import structlog
from aiohttp import web
from chassis.discovery import Resolver, is_service_name
from chassis.registry import RegistryClient
from chassis.registry_keys import TrustedKeys
from prometheus_client import exposition as prom_exposition

log = structlog.get_logger("mercato.migration.worker")


def backoff(failures: int) -> float:
    """Seconds before the next try after ``failures`` in a row: 0.4 s doubling, at most 5."""
    return min(5.0, 0.2 * 2 ** min(failures, 5))


async def connect_retrying(dsn: str, stop: asyncio.Event, waiting_event: str
                           ) -> asyncpg.Connection | None:
    """A connection to the monolith's database, waited for (logging ``waiting_event``) until
    it answers or the process is asked to stop (None)."""
    failures = 0
    while not stop.is_set():
        try:
            return await asyncpg.connect(dsn)
        except (OSError, asyncpg.PostgresError) as exc:
            failures += 1
            log.warning(waiting_event, error=str(exc))
            await asyncio.sleep(backoff(failures))
    return None


class Worker:
    """The lifecycle both processes have: a stop event, readiness, and the broker and
    registry used to find the services by name."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.ready = False
        self.nc: Any = None
        self.resolver: Resolver | None = None
        self.registry: RegistryClient | None = None

    async def resolve(self, url: str) -> str:
        """``url`` with a service name (``http://catalog``) resolved to a live instance."""
        url = url.rstrip("/")
        if self.resolver is None:
            return url
        return (await self.resolver.resolve_url(url)).rstrip("/")

    async def connect_broker(self, nats_url: str, name: str, service_urls: list[str]) -> None:
        """Connects to NATS with the sync's credentials; with a registry client when any of
        ``service_urls`` names a service rather than an address."""
        import nats

        options: dict[str, Any] = {"max_reconnect_attempts": -1, "reconnect_time_wait": 0.5,
                                   "name": name}
        if seed := os.environ.get("SYNC_NATS_NKEY_SEED"):
            options["nkeys_seed_str"] = seed
        if prefix := os.environ.get("SYNC_NATS_INBOX_PREFIX"):
            options["inbox_prefix"] = prefix
        self.nc = await nats.connect(nats_url, **options)
        if any(is_service_name(urlsplit(u).hostname or "") for u in service_urls):
            trusted = json.loads(os.environ.get("SYNC_REGISTRY_TRUSTED_KEYS") or "{}")
            self.registry = RegistryClient(self.nc, trusted=TrustedKeys(trusted)
                                           if trusted else None)
            self.resolver = Resolver(lambda: self.registry)

    async def close_broker(self) -> None:
        if self.resolver is not None:
            await self.resolver.close()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()

    def health_app(self, metrics: Callable[[], bytes]) -> web.Application:
        """``/health/live``, ``/health/ready`` (503 until ready) and ``/metrics`` (503 until
        ready: its figures come from what ``run`` builds)."""
        app = web.Application()

        async def live(_: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        async def ready(_: web.Request) -> web.Response:
            return web.json_response({"status": "ok" if self.ready else "starting"},
                                     status=200 if self.ready else 503)

        async def exposition(_: web.Request) -> web.Response:
            if not self.ready:
                return web.Response(status=503)
            return web.Response(body=metrics(), headers={
                "Content-Type": prom_exposition.CONTENT_TYPE_LATEST})

        app.router.add_get("/health/live", live)
        app.router.add_get("/health/ready", ready)
        app.router.add_get("/metrics", exposition)
        return app


def run_until_signalled(worker: Worker, run: Callable[[], Awaitable[None]]) -> None:
    """Runs ``run`` on a fresh event loop; SIGTERM or SIGINT asks it to stop."""

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop.set)
        await run()

    asyncio.run(serve())
