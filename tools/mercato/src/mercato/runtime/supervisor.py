"""The supervisor: one asyncio process that owns every process of a running platform.

``python -m mercato.runtime.supervisor --home DIR`` (``mercato up`` spawns it detached):
PostgreSQL and NATS first, then a database and role per service, then the gateway and every
service instance in parallel. A child that exits without being asked is restarted with
exponential backoff. Once ready, every child is also watched for liveness (a service's
``/health/live``, a simulator's health path, PostgreSQL, NATS and Envoy their own probes):
one that stops answering for ``MERCATO_LIVENESS_TIMEOUT_S`` (a SIGSTOP, a deadlock, a blocked
event loop) has its whole process group killed with SIGKILL and is restarted like a crash.
PostgreSQL, NATS and Envoy, which everything depends on, restart at once instead of backing
off. Everything it knows goes to ``run/state.json`` (rewritten atomically on every change),
including why each process last restarted, which ``mercato up/status/down`` read; it never
needs to be asked anything. SIGTERM stops services, the gateway, NATS and PostgreSQL in that
order, then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import IO, Any

import aiohttp
import psutil
import structlog
from chassis.logging import configure_logging
from chassis.settings import ServiceSettings

from mercato.runtime import broker, commands, prometheus
from mercato.runtime.cleanup import ENV_MARK
from mercato.runtime.databases import create_service_databases, prepare_data_dir
from mercato.runtime.edge import EdgeError, EdgeWiring
from mercato.runtime.faultproxy import FaultProxy, faults_path, route_name, with_port
from mercato.runtime.nats import Nats
from mercato.runtime.paths import Home, free_port, write_atomic
from mercato.runtime.postgres import Postgres
from mercato.runtime.proc import deathsig_preexec, go_engine_env
from mercato.runtime.releases import Releases
from mercato.runtime.services import (
    SERVICES,
    SIMULATORS,
    api_path,
    instance_ids,
    legacy_env,
    parse_scale,
    parse_with,
    register_storefront_client_argv,
    repo_root,
    service_env,
    service_secrets,
    simulator_token,
)
from mercato.runtime.telemetry import (
    PROMETHEUS_USER,
    Telemetry,
    parse_sampling,
    prometheus_password,
)
from mercato.runtime.zygote import Forked, Zygote, ZygoteGone, module_of
from mercato.runtime.zygote import enabled as zygote_enabled

# Units on hand the demo catalog's products get on a new home (``stock_demo_catalog``).
DEMO_STOCK_ON_HAND = 100
BACKOFF_START_S = 0.5
BACKOFF_CAP_S = 30.0
# A process that stayed up this long is healthy again: its next crash restarts fast.
STABLE_AFTER_S = 30.0
SERVICE_STOP_TIMEOUT_S = 10.0
# Exits before the first "ready" that make startup give up (a broken build, a bad config):
# waiting out the backoff forever would only hide the error from `mercato up`.
STARTUP_EXIT_LIMIT = 3
# Infrastructure (quick_restart) comes back at once this many crashes in a row; past that it
# is broken rather than unlucky (a full disk, a port taken) and backs off like the rest.
QUICK_RESTARTS = 5
QUICK_RESTART_DELAY_S = 0.1
# The zygote is started again after it died, up to this many failed starts in all.
ZYGOTE_START_ATTEMPTS = 3

# Liveness: probed once a child is ready, every third of the timeout (at most
# LIVENESS_INTERVAL_MAX_S: the default timeout is three missed probes, as Kubernetes's
# failureThreshold 3 times periodSeconds); failing without a break for the timeout gets it
# killed. The default leaves room for a stop-the-world pause under load; `mercato up
# --liveness-timeout S` or MERCATO_LIVENESS_TIMEOUT_S changes it. A probe every second was
# 17 HTTP requests a second for the supervisor and one for every process, idle or not.
LIVENESS_TIMEOUT_ENV = "MERCATO_LIVENESS_TIMEOUT_S"
DEFAULT_LIVENESS_TIMEOUT_S = 15.0
LIVENESS_INTERVAL_MAX_S = 5.0
LIVENESS_INTERVAL_MIN_S = 0.2


def liveness_interval(timeout_s: float) -> float:
    """Seconds between two liveness probes of a child, for a liveness timeout."""
    return min(LIVENESS_INTERVAL_MAX_S, max(LIVENESS_INTERVAL_MIN_S, timeout_s / 3))
# A restarted child (the platform was ready) that is not ready after this long is killed and
# started again; the first start is bounded by `mercato up --timeout` instead.
STARTUP_TIMEOUT_ENV = "MERCATO_STARTUP_TIMEOUT_S"
DEFAULT_STARTUP_TIMEOUT_S = 120.0

# Why a child last restarted (state.json ``last_restart.cause``).
EXITED, LIVENESS_TIMEOUT, STARTUP_TIMEOUT = "exited", "liveness_timeout", "startup_timeout"
REQUESTED = "requested"  # through the command channel (the console's restart button)
# What the command channel may stop, start and restart: not what everything depends on.
COMMANDABLE_KINDS = ("service", "simulator", "console", "gateway")

log = structlog.get_logger("mercato.supervisor")

# `python -m identity register-client` answering 1 (a database error) is asked again.
REGISTRATION_ATTEMPTS = 3


def emit(level: int, event: str, **fields: Any) -> None:
    # JSON lines through chassis.logging, like the services, so `mercato logs` merges them
    # (the gateway control plane, running in this process, logs the same way).
    log.log(level, event, **fields)


# A supervised process: spawned apart, or forked by the zygote.
Proc = asyncio.subprocess.Process | Forked


class StartupError(Exception):
    def __init__(self, message: str, process: str | None = None) -> None:
        super().__init__(message)
        self.process = process


@dataclass
class Spec:
    """How to run and judge one supervised process."""

    name: str
    kind: str  # engine | service | gateway
    argv: Callable[[int | None], list[str]]
    ready: Callable[[Child], Awaitable[bool]]
    port: Callable[[], int | None] = lambda: None
    env: Callable[[int | None], dict[str, str]] = lambda _port: {}
    popen_kwargs: dict[str, Any] = field(default_factory=dict)
    service: str | None = None
    stop_signal: int = signal.SIGTERM
    # PostgreSQL's backends share its group and read SIGINT as "cancel query": signal only it.
    signal_group: bool = True
    stop_timeout: float = SERVICE_STOP_TIMEOUT_S
    # Answers while the process works, once it was ready; None: only an exit is noticed.
    live: Callable[[Child], Awaitable[bool]] | None = None
    # What everything else depends on (PostgreSQL, NATS, Envoy): a growing backoff would only
    # stretch everyone's outage, so it restarts at once (see QUICK_RESTARTS).
    quick_restart: bool = False


@dataclass
class Child:
    spec: Spec
    log_path: str
    state: str = "starting"
    pid: int | None = None
    port: int | None = None
    restarts: int = 0
    started_at: float | None = None
    ready_at: float | None = None
    exit_code: int | None = None
    ever_ready: bool = False
    exits_before_ready: int = 0
    stop_requested: bool = False
    proc: Proc | None = None
    task: asyncio.Task[None] | None = None
    # Set by the watcher before it kills a hung child: (cause, detail) of that kill.
    kill_reason: tuple[str, str] | None = None
    # Wall time the liveness probe started failing (None while it answers).
    not_live_since: float | None = None
    last_restart: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.spec.kind, "service": self.spec.service, "pid": self.pid,
                "port": self.port, "state": self.state, "restarts": self.restarts,
                "started_at": self.started_at, "ready_at": self.ready_at,
                "exit_code": self.exit_code, "log": self.log_path,
                "not_live_since": self.not_live_since, "last_restart": self.last_restart}


def listens_on(pid: int | None, port: int | None) -> bool:
    """Whether process ``pid`` has a listening TCP socket on ``port``."""
    if pid is None or port is None:
        return False
    try:
        sockets = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(s.status == psutil.CONN_LISTEN and s.laddr and s.laddr.port == port
               for s in sockets)


class Supervisor:
    def __init__(self, home: Home, *, services: dict[str, str], scale: dict[str, int],
                 gateway: bool = True, liveness_timeout: float = DEFAULT_LIVENESS_TIMEOUT_S,
                 startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_S,
                 fault_proxy: bool = False, scale_args: list[str] | None = None,
                 telemetry: Telemetry | None = None, with_: list[str] | None = None) -> None:
        self.home = home
        self.with_ = list(with_ or [])  # optional processes (`mercato up --with legacy`)
        self.telemetry = telemetry
        # What `mercato up` was asked, so a tool that restarts the platform (`mercato chaos`
        # after killing the supervisor) can start it the same way.
        self.options = {"scale": list(scale_args or []), "fault_proxy": fault_proxy,
                        "with": list(with_ or [])}
        self.fault_proxy: FaultProxy | None = FaultProxy(
            faults_path(home), on_error=lambda m: emit(logging.ERROR, "faults_file_invalid",
                                                       error=m)) if fault_proxy else None
        self.liveness_timeout = liveness_timeout
        self.startup_timeout = startup_timeout
        self.services = services  # service name -> module run with `python -m`
        self.scale = scale
        self.gateway = gateway
        self.ports = home.ports()
        self.children: dict[str, Child] = {}
        self.phase = "starting"
        self.error: dict[str, Any] | None = None
        self.started_at = time.time()
        self.ready_at: float | None = None
        self.stop_event = asyncio.Event()
        self.pg = Postgres(home, self.ports.postgres)
        self.nats = Nats(home.nats_dir, self.ports.nats)
        self.db_urls: dict[str, str] = {}
        self.nats_urls: dict[str, str] = {}
        self.simulator_ports: dict[str, dict[str, int]] = {}
        self.legacy_port: int | None = None
        self.acl_port: int | None = None  # the migration's anti-corruption layer
        self.sync_port: int | None = None  # the migration's data sync (ADR 0029)
        self.stock_port: int | None = None  # the migration's stock split (ADR 0034)
        self.http: aiohttp.ClientSession | None = None
        self.edge: EdgeWiring | None = None
        self.base_env = {**os.environ, ENV_MARK: str(home.root), "PYTHONUNBUFFERED": "1"}
        self.cwd = str(repo_root())
        # The Python services' shared interpreter image (runtime/zygote.py, ADR 0033).
        self.zygote: Zygote | None = None
        self._zygote_lock = asyncio.Lock()
        self._zygote_failures = 0
        self._logs: list[IO[bytes]] = []
        self.releases = Releases(self)

    # -- state.json ----------------------------------------------------------------------------

    def urls(self) -> dict[str, Any]:
        edge = f"http://localhost:{self.ports.edge}"
        urls: dict[str, Any] = {
            "postgres": f"postgresql://127.0.0.1:{self.ports.postgres}",
            "nats": self.nats.url,
        }
        if self.telemetry is not None:
            urls["console"] = f"http://127.0.0.1:{self.ports.console}/"
        if "prometheus" in self.children:
            urls["prometheus"] = f"http://127.0.0.1:{self.ports.prometheus}"
        if self.legacy_port is not None:
            urls["legacy"] = f"http://127.0.0.1:{self.legacy_port}/shop"
        if self.acl_port is not None:
            urls["acl"] = f"http://127.0.0.1:{self.acl_port}"
        if self.sync_port is not None:
            urls["sync"] = f"http://127.0.0.1:{self.sync_port}"
        if self.stock_port is not None:
            urls["stock"] = f"http://127.0.0.1:{self.stock_port}"
        if self.gateway:
            if "storefront" in self.services:
                urls["storefront"] = f"{edge}/"
            urls.update(edge=edge, envoy_admin=f"unix:{self.home.envoy_admin_socket}",
                        docs={s: f"{edge}{api_path(s)}/docs" for s in self.services})
        return urls

    def write_state(self) -> None:
        state = {
            "version": 1,
            "home": str(self.home.root),
            "supervisor_pid": os.getpid(),
            "phase": self.phase,
            "started_at": self.started_at,
            "ready_at": self.ready_at,
            "updated_at": time.time(),
            "error": self.error,
            "ports": {"postgres": self.ports.postgres, "nats": self.ports.nats,
                      "edge": self.ports.edge, "envoy_admin": self.ports.envoy_admin,
                      "console": self.ports.console},
            "telemetry": self.telemetry.as_json() if self.telemetry else None,
            "urls": self.urls(),
            "processes": {name: c.as_json() for name, c in self.children.items()},
            "options": self.options,
            "releases": self.releases.as_json(),
        }
        if self.fault_proxy is not None:
            state["fault_proxy"] = {"faults_file": str(self.fault_proxy.faults_file),
                                    "routes": {n: r.describe() for n, r in
                                               self.fault_proxy.routes.items()}}
        if self.edge is not None and self.edge.task is not None:
            state["control_plane"] = dict(self.edge.state)
        write_atomic(self.home.state_file, json.dumps(state, indent=1) + "\n")
        if "prometheus" in self.children:
            prometheus.write_targets(self.home, state["processes"])

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        emit(logging.INFO, "phase", phase=phase)
        self.write_state()

    # -- readiness checks ----------------------------------------------------------------------

    async def _http_ok(self, url: str, timeout_s: float = 1.0,
                       auth: aiohttp.BasicAuth | None = None) -> bool:
        assert self.http is not None
        try:
            async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s),
                                     auth=auth) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def _service_ready(self, c: Child) -> bool:
        # Strict: fully up, the broker included (registered, so the edge routes to it; its
        # messaging running). The edge's own health checks accept a broker outage.
        if not await self._http_ok(f"http://127.0.0.1:{c.port}/health/ready?strict=true"):
            return False
        # And answered by this child: another program (another platform on this machine)
        # can take a port between its choice and the child's bind, and its health check
        # would pass for a child that then fails to bind (a CI run's monolith did).
        return await asyncio.to_thread(listens_on, c.pid, c.port)

    async def _service_live(self, c: Child) -> bool:
        # Answered by the event loop alone (no database, no NATS): it fails only when the
        # process itself does not run its loop -- stopped, deadlocked or blocked.
        return await self._http_ok(f"http://127.0.0.1:{c.port}/health/live",
                                   self.probe_timeout)

    @property
    def probe_timeout(self) -> float:
        return min(2.0, max(0.5, self.liveness_timeout / 2))

    async def _envoy_ready(self, c: Child) -> bool:
        from mercato.gateway.envoy import admin_ready

        return await admin_ready(self.home.envoy_admin_socket)

    async def _pg_ready(self, c: Child) -> bool:
        return await asyncio.to_thread(self.pg.is_ready)

    async def _nats_ready(self, c: Child) -> bool:
        return await asyncio.to_thread(self.nats.is_ready)

    # -- ports ---------------------------------------------------------------------------------

    def handed_ports(self) -> set[int]:
        """Every port this platform has given a process, bound yet or not."""
        ports = set(asdict(self.ports).values())
        ports |= {p for p in (self.legacy_port, self.acl_port, self.sync_port, self.stock_port)
                  if p is not None}
        ports |= {p for sim in self.simulator_ports.values() for p in sim.values()}
        return ports | {c.port for c in self.children.values() if c.port is not None}

    def free_port(self) -> int:
        """A free port no other process of this platform was given. Free is not enough: a
        port is chosen before its process binds it (the monolith's one before the edge
        starts, which names it), and a service started meanwhile once drew the same one at
        random, leaving the monolith unable to bind and its health probe answered by the
        catalog."""
        return free_port(avoid=self.handed_ports())

    # -- one supervised process ----------------------------------------------------------------

    def add(self, spec: Spec) -> Child:
        c = Child(spec=spec, log_path=str(self.home.log_file(spec.name)))
        self.children[spec.name] = c
        c.task = asyncio.create_task(self._run_child(c), name=f"child-{spec.name}")
        return c

    async def _spawn(self, c: Child, logfh: IO[bytes]) -> Proc:
        spec = c.spec
        c.port = spec.port()
        kwargs = {"start_new_session": True, "preexec_fn": deathsig_preexec(),
                  "env": {**self.base_env, **spec.env(c.port)}, "cwd": self.cwd,
                  **spec.popen_kwargs}
        if "env" in spec.popen_kwargs:
            kwargs["env"] = {**spec.popen_kwargs["env"], ENV_MARK: str(self.home.root)}
        kwargs.pop("stdin", None)
        argv = spec.argv(c.port)
        if module_of(argv) is not None and set(spec.popen_kwargs) <= {"env"}:
            zygote = await self._zygote()
            if zygote is not None and zygote.can_run(kwargs["env"]):
                try:
                    return await zygote.spawn(argv, kwargs["env"], self.cwd, logfh.fileno())
                except ZygoteGone:
                    pass  # spawned apart below; the next spawn starts a new zygote
        return await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=logfh, stderr=subprocess.STDOUT, **kwargs)

    async def _zygote(self) -> Zygote | None:
        """The running zygote, started on first use or after it died; None when off or it
        cannot start (the children are then spawned apart, as before)."""
        if not zygote_enabled(self.base_env):
            return None
        async with self._zygote_lock:
            if self.zygote is not None and self.zygote.alive:
                return self.zygote
            if self._zygote_failures >= ZYGOTE_START_ATTEMPTS:
                return None
            logfh = open(self.home.log_file("zygote"), "ab")  # noqa: ASYNC230 - lives on
            self._logs.append(logfh)
            zygote = Zygote()
            try:
                await zygote.start(self.base_env, self.cwd, logfh.fileno())
            except (ZygoteGone, OSError) as exc:
                self._zygote_failures += 1
                emit(logging.WARNING, "zygote_failed", error=str(exc),
                     attempts=self._zygote_failures)
                return None
            emit(logging.INFO, "zygote_started", pid=zygote.pid)
            self.zygote = zygote
            return zygote

    async def _run_child(self, c: Child) -> None:
        logfh = open(c.log_path, "ab")  # noqa: ASYNC230 - lives as long as the child
        self._logs.append(logfh)
        crashes_in_a_row = 0
        while not (self.stop_event.is_set() or c.stop_requested):
            try:
                c.proc = await self._spawn(c, logfh)
            except OSError as exc:
                c.state = "failed"
                emit(logging.ERROR, "spawn_failed", process=c.spec.name, error=str(exc))
                self.write_state()
                self.fail(f"could not start {c.spec.name}: {exc}", c.spec.name)
                return
            c.pid, c.state, c.started_at, c.ready_at = c.proc.pid, "starting", time.time(), None
            c.exit_code, c.kill_reason, c.not_live_since = None, None, None
            emit(logging.INFO, "process_started", process=c.spec.name, pid=c.pid, port=c.port)
            self.write_state()
            watcher = asyncio.create_task(self._watch(c, c.proc))
            rc = await c.proc.wait()
            watcher.cancel()
            c.exit_code, c.pid, c.not_live_since = rc, None, None
            if self.stop_event.is_set() or c.stop_requested:
                break
            up_for = time.time() - (c.started_at or time.time())
            crashes_in_a_row = 1 if up_for >= STABLE_AFTER_S else crashes_in_a_row + 1
            if not c.ever_ready:
                c.exits_before_ready += 1
                if c.exits_before_ready >= STARTUP_EXIT_LIMIT and self.phase != "ready":
                    c.state = "failed"
                    emit(logging.ERROR, "process_failed", process=c.spec.name, exit_code=rc)
                    self.write_state()
                    self.fail(f"{c.spec.name} exited {c.exits_before_ready} times before "
                              f"becoming ready (last exit code {rc})", c.spec.name)
                    return
            cause, detail = c.kill_reason or (EXITED, describe_exit(rc))
            if cause == REQUESTED:
                crashes_in_a_row -= 1  # asked for, not a crash: no backoff
                delay = QUICK_RESTART_DELAY_S
            else:
                delay = restart_delay(crashes_in_a_row, quick=c.spec.quick_restart)
            c.restarts += 1
            c.state = "restarting"
            c.last_restart = {"at": time.time(), "cause": cause, "detail": detail,
                              "exit_code": rc, "backoff_s": delay}
            emit(logging.WARNING, "process_exited", process=c.spec.name, exit_code=rc,
                 cause=cause, detail=detail, restart_in_s=delay, restarts=c.restarts)
            self.write_state()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), delay)
        c.state = "stopped"
        self.write_state()

    async def _watch(self, c: Child, proc: Proc) -> None:
        """Until this run of the child ends: wait for it to be ready, then for it to hang."""
        if await self._watch_ready(c, proc) and c.spec.live is not None:
            await self._watch_live(c, proc)

    async def _watch_ready(self, c: Child, proc: Proc) -> bool:
        delay = 0.05
        started = time.monotonic()
        while True:
            try:
                ok = await c.spec.ready(c)
            except Exception:
                ok = False
            if ok:
                c.state, c.ready_at, c.ever_ready = "ready", time.time(), True
                emit(logging.INFO, "process_ready", process=c.spec.name,
                     after_s=round(c.ready_at - (c.started_at or c.ready_at), 3))
                self.write_state()
                return True
            # Only a restart has this limit: the platform's first start is bounded (and its
            # stuck process reported) by `mercato up --timeout`.
            waited = time.monotonic() - started
            if self.phase == "ready" and waited > self.startup_timeout:
                self._kill_hung(c, proc, STARTUP_TIMEOUT,
                                f"not ready {waited:.0f} s after its start "
                                f"(limit {self.startup_timeout:g} s, {STARTUP_TIMEOUT_ENV})")
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    async def _watch_live(self, c: Child, proc: Proc) -> None:
        """Probe every liveness_interval; kill the child once it failed for the timeout."""
        assert c.spec.live is not None
        failing_since: float | None = None
        interval = liveness_interval(self.liveness_timeout)
        while True:
            await asyncio.sleep(interval)
            if self.stop_event.is_set() or c.stop_requested or proc.returncode is not None:
                return  # a stop in progress answers nothing: that is not a hang
            try:
                ok = await asyncio.wait_for(c.spec.live(c), self.probe_timeout + 1.0)
            except Exception:
                ok = False
            now = time.monotonic()
            if ok:
                if failing_since is not None:
                    emit(logging.INFO, "process_live_again", process=c.spec.name,
                         after_s=round(now - failing_since, 1))
                    failing_since, c.not_live_since = None, None
                    self.write_state()
                continue
            if failing_since is None:
                failing_since, c.not_live_since = now, time.time()
                emit(logging.WARNING, "process_not_live", process=c.spec.name, pid=proc.pid,
                     kill_after_s=self.liveness_timeout)
                self.write_state()
            elif now - failing_since >= self.liveness_timeout:
                self._kill_hung(c, proc, LIVENESS_TIMEOUT,
                                f"no liveness answer for {now - failing_since:.1f} s (limit "
                                f"{self.liveness_timeout:g} s, {LIVENESS_TIMEOUT_ENV})")
                return

    def _kill_hung(self, c: Child, proc: Proc, cause: str,
                   detail: str) -> None:
        """SIGKILL the child's whole process group: a hung process may not read SIGTERM (a
        stopped one cannot), and helpers it started must not outlive it. Its exit then
        restarts it like any crash, with ``cause`` as the reason."""
        if proc.returncode is not None or self.stop_event.is_set() or c.stop_requested:
            return
        c.kill_reason = (cause, detail)
        emit(logging.ERROR, "process_hung_killed", process=c.spec.name, pid=proc.pid,
             cause=cause, detail=detail)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    async def stop_child(self, c: Child) -> None:
        c.stop_requested = True
        proc = c.proc
        if proc is not None and proc.returncode is None:
            c.state = "stopping"
            self.write_state()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if c.spec.signal_group:
                    os.killpg(proc.pid, c.spec.stop_signal)
                else:
                    proc.send_signal(c.spec.stop_signal)
            try:
                await asyncio.wait_for(proc.wait(), c.spec.stop_timeout)
            except TimeoutError:
                emit(logging.WARNING, "stop_timeout_kill", process=c.spec.name)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if c.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await c.task

    async def wait_ready(self, names: list[str]) -> None:
        while not all(self.children[n].ever_ready for n in names):
            if self.error is not None:
                raise StartupError(self.error["message"], self.error.get("process"))
            await asyncio.sleep(0.05)

    def fail(self, message: str, process: str | None = None) -> None:
        if self.error is None:
            self.error = {"message": message, "process": process}
        self.write_state()
        self.stop_event.set()

    # -- startup -------------------------------------------------------------------------------

    async def start_engines(self) -> None:
        self.set_phase("starting engines")
        await asyncio.to_thread(prepare_data_dir, self.pg)
        # Only the home's identities may connect; each service to its own subjects.
        self.nats.authorization = broker.authorization(self.home, list(self.services))
        self.nats.write_config()
        pg, nats = self.pg, self.nats
        # pg_isready and NATS' INFO line need the server's own loop to answer: a listening
        # socket alone (the kernel accepts for a stopped process) does not pass.
        self.add(Spec(name="postgres", kind="engine", argv=lambda _p: pg.argv(),
                      port=lambda: pg.port, ready=self._pg_ready, live=self._pg_ready,
                      popen_kwargs=pg.popen_kwargs(), stop_signal=signal.SIGINT,
                      signal_group=False, stop_timeout=30.0, quick_restart=True))
        self.add(Spec(name="nats", kind="engine", argv=lambda _p: nats.argv(),
                      env=lambda _p: go_engine_env(self.base_env), port=lambda: nats.port,
                      ready=self._nats_ready, live=self._nats_ready, quick_restart=True))
        await self.wait_ready(["postgres", "nats"])
        await self.declare_shared_streams()

    async def declare_shared_streams(self) -> None:
        """The registry bucket and the dead letters, as the runtime identity: services may
        read and write in them, not create or reconfigure them."""
        import nats as nats_client
        from chassis.messaging.streams import ensure_dead_letter_stream
        from chassis.registry import open_bucket

        nc = await nats_client.connect(self.nats.url, name="mercato-runtime",
                                       **broker.connect_options(self.home, broker.RUNTIME))
        try:
            await open_bucket(nc)
            await ensure_dead_letter_stream(nc.jetstream())
        finally:
            await nc.close()

    async def create_databases(self) -> None:
        self.set_phase("preparing databases")
        self.db_urls = await create_service_databases(self.pg, [*self.services, *self.with_])
        self.nats_urls = dict.fromkeys(self.services, self.nats.url)
        if self.fault_proxy is not None:
            await self.open_fault_routes()

    async def open_fault_routes(self) -> None:
        """Each service reaches PostgreSQL and NATS through its own proxy routes."""
        assert self.fault_proxy is not None
        await self.fault_proxy.start()
        for service in self.services:
            pg = await self.fault_proxy.add(route_name(service, "postgres"),
                                            ("127.0.0.1", self.ports.postgres))
            nats = await self.fault_proxy.add(route_name(service, "nats"),
                                              ("127.0.0.1", self.ports.nats))
            self.db_urls[service] = with_port(self.db_urls[service], pg)
            self.nats_urls[service] = with_port(self.nats.url, nats)
        emit(logging.INFO, "fault_proxy_ready", routes=len(self.fault_proxy.routes))

    async def start_gateway(self) -> None:
        if "legacy" in self.with_:
            # Fixed for the run: the edge's STATIC clusters name them before they start.
            self.legacy_port = self.legacy_port or self.free_port()
            self.acl_port = self.acl_port or self.free_port()
        edge = self.edge = EdgeWiring(self.home, nats_url=self.nats.url,
                                      services=list(self.services), edge_port=self.ports.edge,
                                      admin_port=self.ports.envoy_admin,
                                      on_change=self.write_state,
                                      telemetry=self.telemetry.edge(self.home, self.ports)
                                      if self.telemetry else None,
                                      legacy_port=self.legacy_port, acl_port=self.acl_port)
        try:
            argv = await edge.prepare()
        except EdgeError as exc:
            raise StartupError(str(exc), "envoy") from exc
        await edge.start_control_plane()
        self.add(Spec(name="envoy", kind="gateway", argv=lambda _p: list(argv),
                      port=lambda: self.ports.edge, ready=self._envoy_ready,
                      live=self._envoy_ready, quick_restart=True))

    def start_services(self) -> list[str]:
        names = []
        for service, module in self.services.items():
            for iid in instance_ids(service, self.scale.get(service, 1)):
                self.add(self._service_spec(service, module, iid))
                names.append(iid)
        return names

    def start_simulators(self) -> list[str]:
        names = []
        for sim in SIMULATORS:
            if not any(s in self.services or s in self.with_ for s in sim.used_by):
                continue
            ports = self.simulator_ports.setdefault(
                sim.name, {name: self.free_port() for name in sim.ports})
            data_dir = self.home.root / sim.name
            data_dir.mkdir(parents=True, exist_ok=True)
            url = f"http://127.0.0.1:{ports[sim.ports[0]]}{sim.health_path}"

            def ready(c: Child, url: str = url) -> Awaitable[bool]:
                return self._http_ok(url)

            def live(c: Child, url: str = url) -> Awaitable[bool]:
                return self._http_ok(url, self.probe_timeout)

            self.add(Spec(name=sim.name, kind="simulator", argv=lambda _p, m=sim.module: [
                sys.executable, "-m", m], port=lambda p=ports[sim.ports[0]]: p,
                env=lambda _p, s=sim, p=ports, d=data_dir: {
                    **s.env(p, d), s.token_env: simulator_token(self.home, s.name)},
                ready=ready, live=live))
            names.append(sim.name)
        return names

    def _simulator_env(self, service: str) -> dict[str, str]:
        env: dict[str, str] = {}
        for sim in SIMULATORS:
            if service in sim.used_by and sim.name in self.simulator_ports:
                env.update(sim.used_by[service](self.simulator_ports[sim.name]))
                env[sim.token_env] = simulator_token(self.home, sim.name)
        return env

    def _service_spec(self, service: str, module: str, iid: str) -> Spec:
        def env(port: int | None) -> dict[str, str]:
            assert port is not None
            return {**service_env(service, instance_id=iid, port=port,
                                  database_url=self.db_urls[service],
                                  nats_url=self.nats_urls[service]),
                    **self._simulator_env(service), **service_secrets(self.home, service),
                    **(self.telemetry.service_env(self.home, self.ports, service)
                       if self.telemetry else {}),
                    **broker.service_broker_env(self.home, service, self._callers()),
                    # Beside the monolith the shop's catalog is the monolith's, brought over
                    # by the sync's backfill (ADR 0029), not the demo one.
                    **({"CATALOG_SEED_DEMO": "false"} if service == "catalog"
                       and self._syncs_catalog() else {})}

        return Spec(name=iid, kind="service", service=service,
                    argv=lambda _p: [sys.executable, "-m", module], port=self.free_port, env=env,
                    ready=self._service_ready, live=self._service_live)

    def _callers(self) -> list[str]:
        """Whose signed identities the services trust: each other, and with ``--with
        legacy`` the migration's sync (catalog lets it state products: ADR 0029) and the
        ACL (identity exchanges legacy sessions for it: ADR 0032)."""
        return [*self.services, *(["sync"] if self._syncs_catalog() else []),
                *(["acl"] if self._bridges_identity() else [])]

    def _bridges_identity(self) -> bool:
        return "legacy" in self.with_ and "identity" in self.services \
            and self.acl_port is not None

    def _syncs_catalog(self) -> bool:
        return "legacy" in self.with_ and "catalog" in self.services

    def _sync_spec(self) -> Spec:
        port = self.sync_port = self.sync_port or self.free_port()
        options = broker.connect_options(self.home)

        def env(_port: int | None) -> dict[str, str]:
            # The CLI's broker identity: the sync is the migration's tool, and its consumer
            # of catalog's events needs JetStream consumer rights no service has on another
            # service's stream.
            return {"SYNC_SIGNING_KEY": broker.registry_private_key(self.home, "sync"),
                    "SYNC_NATS_NKEY_SEED": options["nkeys_seed_str"],
                    "SYNC_NATS_INBOX_PREFIX": options["inbox_prefix"],
                    "SYNC_REGISTRY_TRUSTED_KEYS": json.dumps(
                        broker.trusted_registry_keys(self.home, list(self.services)))}

        return Spec(name="sync", kind="service", service="sync",
                    argv=lambda _p: [sys.executable, "-m", "mercato.migration.sync",
                                     "--port", str(port), "--legacy-dsn",
                                     self.db_urls["legacy"], "--catalog-url", "http://catalog",
                                     # identity's accounts too, when it runs (ADR 0031)
                                     *(["--identity-url", "http://identity"]
                                       if "identity" in self.services else []),
                                     "--nats-url", self.nats.url],
                    port=lambda: port, env=env, ready=self._service_ready,
                    live=self._service_live)

    def start_optional(self) -> list[str]:
        """``--with legacy``: the monolith, one instance on a port kept for the whole run
        (its clients, the bench among them, find it in ``urls.legacy``). Supervised like a
        service: restarted on exit, killed when /health/live stops answering, scraped by
        Prometheus (kind ``service``); it migrates its own database at start."""
        if "legacy" not in self.with_:
            return []
        port = self.legacy_port = self.legacy_port or self.free_port()

        def env(_port: int | None) -> dict[str, str]:
            provider = self.simulator_ports.get("payments-provider")
            charges = {} if provider is None else {
                "LEGACY_PROVIDER_URL": f"http://127.0.0.1:{provider['http']}",
                "LEGACY_PROVIDER_API_TOKEN": simulator_token(self.home, "payments-provider")}
            # The services' access tokens are accepted by the monolith (ADR 0032): it
            # reads identity's keys through the edge, as any outside client would.
            trust = {} if not self._bridges_identity() else {
                "LEGACY_JWKS_URL": f"http://127.0.0.1:{self.ports.edge}/.well-known/jwks.json",
                "LEGACY_JWT_ISSUER": ServiceSettings.model_fields["jwt_issuer"].default,
                "LEGACY_JWT_AUDIENCE": ServiceSettings.model_fields["jwt_audience"].default}
            return {**legacy_env(port=port, database_url=self.db_urls["legacy"]), **charges,
                    **trust, **(self.telemetry.service_env(self.home, self.ports, "legacy")
                                if self.telemetry else {})}

        self.add(Spec(name="legacy", kind="service", service="legacy",
                      argv=lambda _p: [sys.executable, "-m", "legacy"], port=lambda: port,
                      env=env, ready=self._service_ready, live=self._service_live))
        if self.acl_port is None:  # no edge (--no-gateway): nothing to migrate through
            return ["legacy"]
        acl_port = self.acl_port
        # The migration's anti-corruption layer (mercato.migration.acl): legacy paths
        # answered from the services (through the edge) and the shadow comparisons.
        def acl_env(_port: int | None) -> dict[str, str]:
            # Its signed service identity: identity exchanges legacy sessions the monolith
            # vouched for into access tokens for it alone (ADR 0032).
            return ({"ACL_SIGNING_KEY": broker.registry_private_key(self.home, "acl")}
                    if self._bridges_identity() else {})

        self.add(Spec(name="acl", kind="service", service="acl",
                      argv=lambda _p: [sys.executable, "-m", "mercato.migration.acl",
                                       "--port", str(acl_port), "--legacy-url",
                                       f"http://127.0.0.1:{port}", "--services-url",
                                       f"http://127.0.0.1:{self.ports.edge}"],
                      port=lambda: acl_port, env=acl_env, ready=self._service_ready,
                      live=self._service_live))
        if not self._syncs_catalog():
            return ["legacy", "acl"]
        # The data sync between the monolith's products and the catalog (ADR 0029).
        self.add(self._sync_spec())
        if "inventory" not in self.services:
            return ["legacy", "acl", "sync"]
        # The stock split between the monolith's stock and the inventory (ADR 0034).
        self.add(self._stock_spec())
        return ["legacy", "acl", "sync", "stock"]

    def _stock_spec(self) -> Spec:
        from mercato.migration.flags import flag_file

        port = self.stock_port = self.stock_port or self.free_port()
        sync = self._sync_spec()  # the same identity and broker credentials as the sync
        return Spec(name="stock", kind="service", service="stock",
                    argv=lambda _p: [sys.executable, "-m", "mercato.migration.stock",
                                     "--port", str(port), "--legacy-dsn",
                                     self.db_urls["legacy"], "--inventory-url",
                                     "http://inventory", "--nats-url", self.nats.url,
                                     "--flags", str(flag_file(self.home.root))],
                    port=lambda: port, env=sync.env, ready=self._service_ready,
                    live=self._service_live)

    async def register_oauth_clients(self) -> None:
        """Registers the storefront at identity as a confidential OAuth 2 client with the
        home's secret (made once, 0600 under secrets/, handed to the storefront as
        STOREFRONT_OAUTH_CLIENT_SECRET) and the edge's callback URIs, through identity's
        own command line, as ``mercato admin create-admin`` does. Idempotent: an unchanged
        registration writes nothing."""
        if self.services.get("identity") != "identity":
            return  # no identity here (tests running stand-ins): nobody to register with
        secret = service_secrets(self.home, "storefront")["STOREFRONT_OAUTH_CLIENT_SECRET"]
        env = {**self.base_env, "IDENTITY_DATABASE_URL": self.db_urls["identity"],
               "IDENTITY_NATS_URL": self.nats.url, "IDENTITY_ENVIRONMENT": "development",
               "IDENTITY_INSTANCE_ID": "identity-register-client"}
        for attempt in range(1, REGISTRATION_ATTEMPTS + 1):
            proc = await asyncio.create_subprocess_exec(
                *register_storefront_client_argv(sys.executable, self.ports.edge),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, cwd=str(repo_root()))
            try:
                out, err = await proc.communicate((secret + "\n").encode())
            except asyncio.CancelledError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                raise
            if proc.returncode == 0:
                emit(logging.INFO, "oauth_client_registered", client="storefront",
                     outcome=out.decode(errors="replace").strip(), attempt=attempt)
                return
            message = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            # Exit 1 is the database's answer, not the registration's: once, on a fresh
            # database while identity's first instance was starting beside it, a transaction
            # came back aborted. The command is idempotent, so it is asked again; exit 2 (a
            # bad registration) would only fail the same way.
            if proc.returncode != 1 or attempt == REGISTRATION_ATTEMPTS:
                break
            emit(logging.WARNING, "oauth_client_registration_retried", client="storefront",
                 attempt=attempt, error=message[0])
            await asyncio.sleep(0.5 * attempt)
        self.fail(f"registering the storefront's OAuth client failed: {message[0]}", "identity")
    def _console_spec(self, telemetry: Telemetry) -> Spec:
        url = f"http://127.0.0.1:{self.ports.console}/health"
        return Spec(name="console", kind="console",
                    argv=lambda _p: telemetry.console_argv(self.home),
                    port=lambda: self.ports.console, env=lambda _p: telemetry.console_env(),
                    ready=lambda _c: self._http_ok(url),
                    live=lambda _c: self._http_ok(url, self.probe_timeout))

    def _prometheus_spec(self) -> Spec:
        try:
            scale = prometheus.for_scale()
        except ValueError as exc:
            raise StartupError(str(exc), "prometheus") from exc
        argv = prometheus.prepare(self.home, self.ports.prometheus, scale)
        url = f"http://127.0.0.1:{self.ports.prometheus}/-/ready"
        auth = aiohttp.BasicAuth(PROMETHEUS_USER, prometheus_password(self.home))
        return Spec(name="prometheus", kind="console", argv=lambda _p: argv,
                    env=lambda _p: go_engine_env(self.base_env),
                    port=lambda: self.ports.prometheus,
                    ready=lambda _c: self._http_ok(url, auth=auth),
                    live=lambda _c: self._http_ok(url, self.probe_timeout, auth))

    async def command(self, command: str, name: str) -> dict[str, Any]:
        """A command from the channel (mercato.runtime.commands)."""
        c = self.children.get(name)
        if c is None:
            return {"ok": False, "error": f"no process {name!r}"}
        if c.spec.kind not in COMMANDABLE_KINDS:
            return {"ok": False, "error": f"{name} is an {c.spec.kind}: restart the platform"}
        if self.phase != "ready":
            return {"ok": False, "error": f"the platform is {self.phase}"}
        emit(logging.INFO, "command", command=command, process=name)
        if command == "stop":
            await self.stop_child(c)
            return {"ok": True, "state": c.state}
        if command == "start" or (command == "restart" and c.stop_requested):
            if not c.stop_requested:
                return {"ok": False, "error": f"{name} is not stopped"}
            c.stop_requested = False
            c.task = asyncio.create_task(self._run_child(c), name=f"child-{name}")
            return {"ok": True, "state": "starting"}
        proc = c.proc
        if proc is None or proc.returncode is not None:
            return {"ok": False, "error": f"{name} is not running ({c.state})"}
        c.kill_reason = (REQUESTED, "restart asked through the supervisor's command channel")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, c.spec.stop_signal)
        return {"ok": True, "state": "restarting"}

    async def stock_demo_catalog(self) -> None:
        """Gives the demo catalog's products stock once per home, so a new user can buy
        something right after ``mercato up`` (development only: the seeded catalog has no
        stock of its own, since stock is inventory's). Runs before the platform is declared
        ready, so the products it sees are the seeded ones: anything created later (tests,
        the back office) keeps the stock it is given. Through inventory's admin API at the
        edge, with a short-lived admin token from identity's own command line."""
        wanted = {"identity", "catalog", "inventory"}
        marker = self.home.root / "demo-stock.json"
        if (not self.gateway or marker.exists() or DEMO_STOCK_ON_HAND <= 0
                or any(self.services.get(s) != s for s in wanted)):
            return
        env = {**self.base_env, "IDENTITY_DATABASE_URL": self.db_urls["identity"],
               "IDENTITY_NATS_URL": self.nats.url, "IDENTITY_ENVIRONMENT": "development",
               "IDENTITY_INSTANCE_ID": "identity-issue-admin-token",
               **service_secrets(self.home, "identity")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "identity", "issue-admin-token", "--ttl-s", "120",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(repo_root()))
        out, err = await proc.communicate()
        if proc.returncode != 0:
            message = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            emit(logging.WARNING, "demo_stock_skipped", reason=message[0])
            return
        token = out.decode().strip()
        assert self.http is not None
        try:
            stocked = await stock_products(self.http, f"http://127.0.0.1:{self.ports.edge}",
                                           token, DEMO_STOCK_ON_HAND)
        except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
            # Not fatal: the shop works, the demo products just cannot be bought yet.
            emit(logging.WARNING, "demo_stock_skipped", reason=f"{exc.__class__.__name__}: {exc}")
            return
        marker.write_text(json.dumps({"products": stocked, "on_hand": DEMO_STOCK_ON_HAND,
                                      "at": time.time()}) + "\n")
        emit(logging.INFO, "demo_stock_set", products=stocked, on_hand=DEMO_STOCK_ON_HAND)

    async def startup(self) -> None:
        t0 = time.monotonic()
        await self.start_engines()
        await self.create_databases()
        self.set_phase("starting services")
        names: list[str] = []
        if self.telemetry is not None:
            self.add(self._console_spec(self.telemetry))
            names.append("console")
            if prometheus.binary() is not None:
                self.add(self._prometheus_spec())
                names.append("prometheus")
            else:
                emit(logging.INFO, "alerts_off", reason="no Prometheus binary: run "
                     "`make observability-tools` for the console's alerts")
        if self.gateway:
            await self.start_gateway()
            names.append("envoy")
        names += self.start_simulators()
        # Beside the services' start, not before it: both migrate identity's database under
        # its advisory lock, and the registration must be done before the platform is ready.
        registration = asyncio.create_task(self.register_oauth_clients(),
                                           name="register-oauth-clients")
        names += self.start_services()
        names += self.start_optional()
        try:
            await self.wait_ready(names)
            await registration
            if self.error is None:
                await self.stock_demo_catalog()
        finally:
            if not registration.done():  # startup failed or was cancelled meanwhile
                registration.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await registration
        if self.error is not None:
            raise StartupError(self.error["message"], self.error.get("process"))
        self.ready_at = time.time()
        emit(logging.INFO, "platform_ready", after_s=round(time.monotonic() - t0, 2))
        self.set_phase("ready")

    # -- shutdown ------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        self.stop_event.set()
        failed = self.phase == "failed" or self.error is not None
        self.phase = "stopping"
        self.write_state()
        by_kind = lambda kind: [c for c in self.children.values() if c.spec.kind == kind]  # noqa: E731
        await asyncio.gather(*(self.stop_child(c) for c in by_kind("service")))
        await asyncio.gather(*(self.stop_child(c) for c in by_kind("simulator")))
        if self.fault_proxy is not None:
            await self.fault_proxy.close()
        await asyncio.gather(*(self.stop_child(c) for c in by_kind("console")))
        if self.edge is not None:
            await self.edge.stop_control_plane()
        await asyncio.gather(*(self.stop_child(c) for c in by_kind("gateway")))
        if self.edge is not None:
            await self.edge.close()
        for name in ("nats", "postgres"):
            if name in self.children:
                await self.stop_child(self.children[name])
        # Belt and braces: a server from an earlier, killed supervisor would hold PGDATA.
        await asyncio.to_thread(self.pg.pg_ctl_stop)
        if self.http is not None:
            await self.http.close()
        if self.zygote is not None:
            await self.zygote.close()
        for fh in self._logs:
            fh.close()
        self.phase = "failed" if failed else "stopped"
        self.write_state()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0))
        self.write_state()
        channel = await commands.serve(self.home.supervisor_socket, self.command,
                                       self.releases.handle)
        startup = asyncio.create_task(self.startup(), name="startup")
        stop_wait = asyncio.create_task(self.stop_event.wait())
        try:
            await asyncio.wait({startup, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if startup.done() and not startup.cancelled() and startup.exception() is not None:
                exc = startup.exception()
                if isinstance(exc, StartupError):
                    self.fail(str(exc), exc.process)
                else:
                    emit(logging.ERROR, "startup_crashed", exception=_exc_text(exc))
                    self.fail(f"startup failed: {exc!r}")
            if not startup.done():
                startup.cancel()
                with contextlib.suppress(BaseException):
                    await startup
            await self.stop_event.wait()
        finally:
            stop_wait.cancel()
            channel.close()
            await self.shutdown()
            self.home.supervisor_socket.unlink(missing_ok=True)
        emit(logging.INFO, "supervisor_exit", phase=self.phase)
        return 1 if self.error else 0

    def request_stop(self) -> None:
        if not self.stop_event.is_set():
            emit(logging.INFO, "stop_requested")
            self.stop_event.set()


def restart_delay(crashes_in_a_row: int, *, quick: bool = False) -> float:
    """Seconds before restart number ``crashes_in_a_row`` (1 = the first in a row)."""
    if quick:
        if crashes_in_a_row <= QUICK_RESTARTS:
            return QUICK_RESTART_DELAY_S
        crashes_in_a_row -= QUICK_RESTARTS
    return min(BACKOFF_START_S * 2 ** (crashes_in_a_row - 1), BACKOFF_CAP_S)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with code {returncode}"


def seconds_from_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{name} must be more than 0 seconds, got {raw}")
    return value


def _exc_text(exc: BaseException | None = None) -> str:
    import traceback

    if exc is None:
        return traceback.format_exc()
    return "".join(traceback.format_exception(exc))


def parse_services(items: list[str] | None) -> dict[str, str]:
    """``--service NAME[=MODULE]`` (tests run fake services); default: every real service."""
    if not items:
        return {s: s for s in SERVICES}
    out: dict[str, str] = {}
    for item in items:
        name, _, module = item.partition("=")
        out[name] = module or name
    return out


# What the edge answers while an instance is still registering, or ejected for a moment.
_EDGE_NOT_YET = (502, 503, 504)


async def stock_products(http: aiohttp.ClientSession, edge: str, token: str, on_hand: int, *,
                         wait_s: float = 45.0, pause_s: float = 0.5) -> int:
    """Give every product the catalog lists ``on_hand`` units, unless inventory counts some
    already; the number stocked. The edge may not route to catalog or inventory yet (their
    instances still registering, or one ejected for a moment): an answer of 502-504 is asked
    again until ``wait_s`` has passed. Anything else that is not a success raises."""
    deadline = time.monotonic() + wait_s
    timeout = aiohttp.ClientTimeout(total=10.0)

    async def ask(method: str, url: str, **kw: Any) -> tuple[int, Any]:
        while True:
            async with http.request(method, url, timeout=timeout, **kw) as r:
                if r.status not in _EDGE_NOT_YET or time.monotonic() > deadline:
                    if r.status >= 400 and r.status != 404:
                        r.raise_for_status()
                    return r.status, await r.json() if r.status < 300 else None
            await asyncio.sleep(pause_s)

    status, page = await ask("GET", f"{edge}/api/catalog/products",
                             params={"page_size": "100"})
    if status != 200:
        raise ValueError(f"the catalog answered {status}")
    stocked = 0
    for product in page["items"]:
        status, stock = await ask("GET", f"{edge}/api/inventory/stock/{product['sku']}")
        # A row already counted (a home from before this step): left alone.
        if status == 200 and stock.get("on_hand", 0) > 0:
            continue
        status, _ = await ask("PUT", f"{edge}/api/inventory/stock/{product['sku']}",
                              json={"on_hand": on_hand},
                              headers={"Authorization": f"Bearer {token}"})
        if status >= 300:
            raise ValueError(f"inventory answered {status} for {product['sku']}")
        stocked += 1
    return stocked


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mercato.runtime.supervisor")
    ap.add_argument("--home", required=True)
    ap.add_argument("--scale", action="append", default=[])
    ap.add_argument("--service", action="append", default=[])
    ap.add_argument("--no-gateway", action="store_true")
    ap.add_argument("--fault-proxy", action="store_true")
    ap.add_argument("--no-telemetry", action="store_true")
    ap.add_argument("--trace-sampling", default="1")
    ap.add_argument("--trace-sql", action="store_true")
    ap.add_argument("--trace-publish", action="store_true")
    ap.add_argument("--with", dest="with_", action="append", default=[])
    args = ap.parse_args(argv)

    configure_logging("supervisor", "supervisor")

    home = Home(args.home)
    home.ensure()
    services = parse_services(args.service)
    try:
        scale = parse_scale(args.scale, list(services))
        with_ = parse_with(args.with_)
        liveness_timeout = seconds_from_env(LIVENESS_TIMEOUT_ENV, DEFAULT_LIVENESS_TIMEOUT_S)
        startup_timeout = seconds_from_env(STARTUP_TIMEOUT_ENV, DEFAULT_STARTUP_TIMEOUT_S)
        telemetry = None if args.no_telemetry else Telemetry(
            sampling=parse_sampling(args.trace_sampling), trace_sql=args.trace_sql,
            trace_publish=args.trace_publish)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    # The lock, not the pid file, decides who owns the home: it cannot go stale.
    lock = open(home.run_dir / "supervisor.lock", "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another supervisor already runs for {home.root}", file=sys.stderr)
        return 3
    write_atomic(home.pid_file, f"{os.getpid()}\n")
    try:
        return asyncio.run(Supervisor(home, services=services, scale=scale,
                                      gateway=not args.no_gateway,
                                      liveness_timeout=liveness_timeout,
                                      startup_timeout=startup_timeout,
                                      fault_proxy=args.fault_proxy,
                                      scale_args=args.scale,
                                      telemetry=telemetry, with_=with_).run())
    finally:
        with contextlib.suppress(FileNotFoundError):
            # Only our own pid file: a newer supervisor may have written its own already.
            if home.pid_file.read_text().strip() == str(os.getpid()):
                home.pid_file.unlink()
        lock.close()


if __name__ == "__main__":
    sys.exit(main())

