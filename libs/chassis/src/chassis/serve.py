"""Process entry for a service: migrate its database, bind, serve with uvicorn (or, with
``<SERVICE>_MIGRATE_ONLY=true``, migrate and exit).

The socket is bound before the app starts so the registry entry written during startup
never points at a port that is not listening yet.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from chassis.logging import configure_logging
from chassis.settings import ServiceSettings

# A keep-alive connection is closed by the client before the server would close it: a
# request sent down a connection the server is closing at that instant fails ("Can not write
# request body", a spurious 503). uvicorn's default (5 s) was below aiohttp's (15 s: the
# chassis's calls between services, the supervisor's liveness probes, every 5 s since issue
# 17); Envoy's upstream connections close after 4 s (gateway/render.py).
SERVER_KEEP_ALIVE_S = 20
CLIENT_KEEP_ALIVE_S = 15


def bind_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: FastAPI) -> uvicorn.Config:
    return uvicorn.Config(app, log_config=None, access_log=False, loop="uvloop",
                          http="httptools", lifespan="on", timeout_graceful_shutdown=10,
                          server_header=False, timeout_keep_alive=SERVER_KEEP_ALIVE_S)


DATE_HEADER_EVERY_S = 1.0


class Server(uvicorn.Server):
    """uvicorn's server, waking once a second instead of ten times.

    uvicorn's main loop sleeps 0.1 s at a time to look for a request to exit, and refreshes
    the ``Date`` header every tenth wake-up. Each wake-up cost ~0.12 ms of CPU here: ~1.2 ms a
    second in every service, loaded or idle, about a sixth of an idle platform's CPU
    (ADR 0049). This loop wakes once a second for the ``Date`` header (its resolution is a
    second), and at once when told to exit: ``should_exit`` set by uvicorn's signal handler,
    a test or another thread wakes it.
    """

    _loop: asyncio.AbstractEventLoop | None = None
    _exit_requested: asyncio.Event | None = None
    _should_exit = False

    @property  # type: ignore[override]
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        loop, woken = self._loop, self._exit_requested
        if value and loop is not None and woken is not None and not loop.is_closed():
            loop.call_soon_threadsafe(woken.set)  # from a signal handler or another thread

    async def main_loop(self) -> None:
        self._exit_requested = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        # on_tick(0) is uvicorn's once-a-second tick: the Date header, the notify callback,
        # then whether to exit (should_exit, or the request limit reached).
        while not await self.on_tick(0):
            try:
                await asyncio.wait_for(self._exit_requested.wait(), DATE_HEADER_EVERY_S)
            except TimeoutError:
                pass


def freeze_startup_heap() -> None:
    """Take what start-up built out of the garbage collector's reach.

    Modules, the app, its routes, models and SQLAlchemy metadata (~150k objects) live as long
    as the process, yet every full collection walked them all: 70-80 ms each here, measured
    at 100-360 ms under load, a stall for every request and message in flight, about once per
    30 s of load per service. Frozen, a full collection walks only what came later."""
    gc.collect()
    gc.freeze()


def _exit_zero_after_drain(signum: int, frame: object) -> None:
    raise SystemExit(0)


def run_service(settings: ServiceSettings, app_factory: Callable[[ServiceSettings], FastAPI],
                migrations_dir: Path | None) -> None:
    configure_logging(settings.service_name, settings.instance, settings.log_level)
    if migrations_dir is not None and settings.database_url:
        from chassis.migrations import upgrade_to_head

        upgrade_to_head(migrations_dir, settings.database_url)
    if settings.migrate_only:
        return
    try:
        sock = bind_socket(settings.host, settings.port)
    except OSError as exc:
        print(f"{settings.service_name}: cannot listen on {settings.host}:{settings.port}: {exc}",
              file=sys.stderr)
        raise SystemExit(2) from exc
    config = uvicorn_config(app_factory(settings))
    # uvicorn re-raises the SIGTERM it caught once it has drained; with the default action
    # that would end the process as "killed by SIGTERM" (-15) instead of a clean exit 0.
    signal.signal(signal.SIGTERM, _exit_zero_after_drain)
    freeze_startup_heap()
    Server(config).run(sockets=[sock])
