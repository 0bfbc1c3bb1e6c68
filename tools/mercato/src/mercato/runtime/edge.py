"""The edge's wiring inside the supervisor: Envoy's files and argv, the broker connection
the gateway control plane reads the registry through, and the control plane kept running.

The supervisor starts Envoy as a child with the argv ``EdgeWiring.prepare`` returns; the
control plane is not a process but a task of the supervisor, restarted here with backoff
when it crashes, because it is what keeps Envoy's routes current.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

import structlog

from mercato.runtime import broker
from mercato.runtime.paths import Home

BACKOFF_START_S = 0.5
BACKOFF_CAP_S = 30.0
STABLE_AFTER_S = 30.0

log = structlog.get_logger("mercato.supervisor")


class EdgeError(Exception):
    """The edge cannot be started (the gateway package is missing, the home's path is too
    long for Envoy's admin socket)."""


class EdgeWiring:
    def __init__(self, home: Home, *, nats_url: str, services: list[str], edge_port: int,
                 admin_port: int, on_change: Callable[[], None],
                 telemetry: Any = None, legacy_port: int | None = None,
                 acl_port: int | None = None) -> None:
        self.home = home
        self.nats_url = nats_url
        self.services = services
        self.edge_port = edge_port
        self.admin_port = admin_port
        self.on_change = on_change  # the supervisor rewrites state.json
        self.telemetry = telemetry  # mercato.gateway.render.EdgeTelemetry, or None
        # `--with legacy`: the monolith and the migration's ACL behind the edge (ADR 0028).
        self.legacy_port = legacy_port
        self.acl_port = acl_port
        self.state: dict[str, Any] = {"state": "stopped", "restarts": 0}
        self.stop_event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.nc: Any = None
        self.cfg: Any = None
        # mercato.gateway.TrafficSplits: the releases under way (mercato.runtime.releases
        # sets them), shared with every run of the control plane.
        self.splits: Any = None

    async def prepare(self) -> list[str]:
        """Write Envoy's files; return its argv."""
        try:
            from mercato.gateway import GatewayConfig, TrafficSplits, prepare
            from mercato.migration.flags import flag_file
        except ImportError as exc:
            raise EdgeError(f"the gateway cannot be loaded ({exc})") from exc
        socket = self.home.envoy_admin_socket
        if len(str(socket).encode()) > 100:  # sun_path holds 108 bytes
            raise EdgeError(f"the home's path is too long for Envoy's admin socket "
                            f"({socket}); use a shorter MERCATO_HOME")
        self.cfg = GatewayConfig(envoy_dir=self.home.envoy_dir, logs_dir=self.home.logs_dir,
                                 edge_port=self.edge_port, admin_port=self.admin_port,
                                 admin_socket=socket, telemetry=self.telemetry,
                                 legacy_port=self.legacy_port, acl_port=self.acl_port,
                                 flags_file=flag_file(self.home.root))
        self.splits = TrafficSplits()
        return await asyncio.to_thread(prepare, self.cfg)

    async def start_control_plane(self) -> None:
        import nats as nats_client
        from chassis.registry import RegistryClient
        from chassis.registry_keys import TrustedKeys

        from mercato.gateway import run_control_plane

        self.nc = await nats_client.connect(self.nats_url, name="mercato-gateway",
                                            max_reconnect_attempts=-1,
                                            **broker.connect_options(self.home, broker.GATEWAY))
        # The edge routes only to instances whose entry their own service signed.
        registry = RegistryClient(self.nc, trusted=TrustedKeys(
            broker.trusted_registry_keys(self.home, self.services)))
        self.task = asyncio.create_task(self._keep_running(run_control_plane, registry),
                                        name="control-plane")

    async def _keep_running(self, run: Callable[..., Any], registry: Any) -> None:
        delay = BACKOFF_START_S
        cps = self.state
        while not self.stop_event.is_set():
            started = time.monotonic()
            cps["state"] = "ready"
            self.on_change()
            try:
                await run(self.cfg, registry, self.stop_event, self.splits)
            except asyncio.CancelledError:
                cps["state"] = "stopped"
                raise
            except Exception:
                log.log(logging.ERROR, "control_plane_crashed",
                        exception=traceback.format_exc())
            if self.stop_event.is_set():
                cps["state"] = "stopped"
                return
            cps["state"] = "restarting"
            cps["restarts"] += 1
            self.on_change()
            delay = BACKOFF_START_S if time.monotonic() - started > STABLE_AFTER_S else delay
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), delay)
            delay = min(delay * 2, BACKOFF_CAP_S)

    async def stop_control_plane(self) -> None:
        self.stop_event.set()
        if self.task is not None:
            done, _ = await asyncio.wait({self.task}, timeout=5.0)
            if not done:
                self.task.cancel()
            with contextlib.suppress(BaseException):  # logged by the wrapper; stopping anyway
                await self.task

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 2.0)
