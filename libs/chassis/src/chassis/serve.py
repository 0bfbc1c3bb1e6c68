"""Process entry for a service: migrate its database, bind, serve with uvicorn (or, with
``<SERVICE>_MIGRATE_ONLY=true``, migrate and exit).

The socket is bound before the app starts so the registry entry written during startup
never points at a port that is not listening yet.
"""

from __future__ import annotations

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
    uvicorn.Server(config).run(sockets=[sock])
