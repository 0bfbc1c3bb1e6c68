"""The gateway control plane: routes + registry in, Envoy's file-based xDS out.

``prepare`` writes everything Envoy needs to start; ``run_control_plane`` then keeps each
cluster's EDS file equal to the registry's live instances. It re-lists on every registry
change and every ``resync_every_s`` as well, because an instance that dies without
deregistering produces no event: its entry just stops being fresh.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
from chassis.registry import Instance, RegistryClient

from mercato.gateway import render
from mercato.gateway.envoy import envoy_argv
from mercato.gateway.files import write_doc
from mercato.gateway.routes import RouteTable, load_routes

log = structlog.get_logger("mercato.gateway")


@dataclass(frozen=True)
class GatewayConfig:
    envoy_dir: Path
    logs_dir: Path
    edge_port: int = 8080
    admin_port: int = 9901
    routes_file: Path | None = None
    # Loopback by default: the edge is not reachable from other machines unless asked.
    listen_host: str = "127.0.0.1"
    admin_host: str = "127.0.0.1"
    # When set, the admin listens on this unix socket instead (the runtime always sets it).
    admin_socket: Path | None = None
    resync_every_s: float = 2.0
    log_level: str = "warn"

    @property
    def bootstrap_file(self) -> Path:
        return self.envoy_dir / "bootstrap.yaml"


def write_static(cfg: GatewayConfig, table: RouteTable) -> list[Path]:
    """Bootstrap, LDS and CDS; returns the files that changed."""
    docs = {cfg.bootstrap_file: render.bootstrap(cfg.envoy_dir, admin_host=cfg.admin_host,
                                                 admin_port=cfg.admin_port,
                                                 admin_socket=cfg.admin_socket)}
    docs.update(render.documents(table, envoy_dir=cfg.envoy_dir, logs_dir=cfg.logs_dir,
                                 listen_host=cfg.listen_host, listen_port=cfg.edge_port))
    return [path for path, doc in docs.items() if write_doc(path, doc)]


def write_endpoints(cfg: GatewayConfig, table: RouteTable,
                    instances: Sequence[Instance]) -> list[str]:
    """One EDS file per cluster; returns the clusters whose file changed."""
    return [service for service in table.services
            if write_doc(render.eds_file(cfg.envoy_dir, service), render.eds(service, instances))]


def prepare(cfg: GatewayConfig) -> list[str]:
    """Write the bootstrap and initial LDS/CDS/EDS files; return Envoy's argv.

    Every cluster starts empty: endpoints left from an earlier run may point at ports now used
    by other processes. Call it once per platform start; to restart only Envoy, re-run the argv
    and it picks up the control plane's current files.
    """
    table = load_routes(cfg.routes_file)
    cfg.envoy_dir.mkdir(parents=True, exist_ok=True)
    cfg.logs_dir.mkdir(parents=True, exist_ok=True)
    write_static(cfg, table)
    write_endpoints(cfg, table, [])
    return envoy_argv(cfg.bootstrap_file, log_level=cfg.log_level)


async def run_control_plane(cfg: GatewayConfig, registry: RegistryClient,
                            stop_event: asyncio.Event) -> None:
    """Keep the EDS files in step with the registry until ``stop_event`` is set."""
    table = load_routes(cfg.routes_file)
    write_static(cfg, table)
    wake = asyncio.Event()
    watcher = asyncio.create_task(_watch(registry, wake), name="gateway-registry-watch")
    stopping = asyncio.create_task(stop_event.wait(), name="gateway-stop")
    try:
        while not stop_event.is_set():
            wake.clear()
            await _sync(cfg, table, registry)
            waker = asyncio.create_task(wake.wait())
            await asyncio.wait({waker, stopping}, timeout=cfg.resync_every_s,
                               return_when=asyncio.FIRST_COMPLETED)
            waker.cancel()
    finally:
        for task in (watcher, stopping):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _sync(cfg: GatewayConfig, table: RouteTable, registry: RegistryClient) -> None:
    try:
        instances = await registry.instances()
    except Exception as exc:
        # Keep serving the last known endpoints: an unreachable registry says nothing about
        # whether the services are up, and emptying every cluster would take the site down.
        log.warning("gateway.registry_unavailable", error=repr(exc))
        return
    changed = write_endpoints(cfg, table, instances)
    if changed:
        counts = {s: sum(1 for i in instances if i.service == s) for s in changed}
        log.info("gateway.endpoints_updated", clusters=counts)


async def _watch(registry: RegistryClient, wake: asyncio.Event) -> None:
    backoff = 0.5
    while True:
        try:
            async for _ in registry.changes():
                backoff = 0.5
                wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The periodic resync still runs; the watch only makes changes show up sooner.
            log.warning("gateway.registry_watch_failed", error=repr(exc), retry_in_s=backoff)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 10.0)
