"""A small TCP fault proxy the runtime can put between the services and PostgreSQL or NATS.

``mercato up --fault-proxy`` makes the supervisor open one route per service and engine
(``orders->postgres``, ``payments->nats`` ...) on a free loopback port and hands the service
that port instead of the engine's. Bytes are copied unchanged both ways; what a route does
to them is read from ``run/faults.json``, which ``mercato chaos`` rewrites at run time (the
file, not a socket: any tool of the home can set a fault, and a stale file after a crash is
harmless because the supervisor clears it at start). Per route:

- ``latency_ms``: every chunk waits that long before it is forwarded (both directions), so
  each round trip to the engine costs about twice that;
- ``reset_seq``: a counter; when it grows, every open connection of the route is cut with
  a TCP reset on both sides (what a crashed middlebox or a failover does);
- ``refuse``: new connections are reset at once, as long as it is true.

Routes not named in the file pass traffic untouched. The proxy runs in the supervisor's own
event loop: it costs nothing when the flag is off, and with the flag a killed supervisor
takes the routes down together with the services that used them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mercato.runtime.paths import write_atomic

POLL_S = 0.2
CHUNK = 64 * 1024


@dataclass
class Fault:
    latency_ms: float = 0.0
    reset_seq: int = 0
    refuse: bool = False

    @classmethod
    def parse(cls, raw: Any) -> Fault:
        """A route's entry of faults.json; ValueError names what is wrong."""
        if not isinstance(raw, dict):
            raise ValueError(f"a route's fault must be an object, got {raw!r}")
        unknown = set(raw) - {"latency_ms", "reset_seq", "refuse"}
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        latency, seq, refuse = raw.get("latency_ms", 0), raw.get("reset_seq", 0), raw.get(
            "refuse", False)
        if not isinstance(latency, int | float) or isinstance(latency, bool) or not (
                0 <= latency <= 60_000):
            raise ValueError(f"latency_ms must be 0..60000, got {latency!r}")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError(f"reset_seq must be a count >= 0, got {seq!r}")
        if not isinstance(refuse, bool):
            raise ValueError(f"refuse must be true or false, got {refuse!r}")
        return cls(latency_ms=float(latency), reset_seq=seq, refuse=refuse)


def read_faults(path: Path) -> dict[str, Fault]:
    """faults.json as route -> Fault; a missing file is no fault. ValueError when invalid."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from exc
    routes = doc.get("routes", {}) if isinstance(doc, dict) else None
    if not isinstance(routes, dict):
        raise ValueError(f"{path}: expected {{\"routes\": {{ROUTE: FAULT}}}}")
    return {str(name): Fault.parse(raw) for name, raw in routes.items()}


def write_faults(path: Path, faults: dict[str, Fault]) -> None:
    write_atomic(path, json.dumps({"routes": {k: asdict(v) for k, v in faults.items()}},
                                  indent=1) + "\n")


FAULTS_FILE = "faults.json"


def faults_path(home: Any) -> Path:
    """The faults file of a home (a ``mercato.runtime.paths.Home``)."""
    return Path(home.run_dir) / FAULTS_FILE


def route_name(service: str, engine: str) -> str:
    return f"{service}->{engine}"


def with_port(url: str, port: int) -> str:
    """``url`` pointing at ``port`` on the same host (user, password, path kept)."""
    parts = urlsplit(url)
    if parts.hostname is None:
        raise ValueError(f"no host in {url!r}")
    auth = parts.netloc.rpartition("@")[0]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return urlunsplit(parts._replace(netloc=f"{auth}@{host}:{port}" if auth
                                     else f"{host}:{port}"))


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN: the peer sees 'connection reset', not a clean end."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass
class Route:
    name: str
    upstream: tuple[str, int]
    port: int = 0
    fault: Fault = field(default_factory=Fault)
    connections: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = field(
        default_factory=set)
    accepted: int = 0
    resets: int = 0
    server: asyncio.Server | None = None

    def describe(self) -> dict[str, Any]:
        return {"port": self.port, "upstream": f"{self.upstream[0]}:{self.upstream[1]}",
                "open": len(self.connections), "accepted": self.accepted,
                "resets": self.resets, "fault": asdict(self.fault)}


class FaultProxy:
    """The routes of one platform, and the watcher of their faults file."""

    def __init__(self, faults_file: Path, *, on_error: Callable[[str], None] | None = None,
                 ) -> None:
        self.faults_file = faults_file
        self.routes: dict[str, Route] = {}
        self._on_error = on_error or (lambda _msg: None)
        self._watch: asyncio.Task[None] | None = None
        self._last_error: str | None = None

    async def add(self, name: str, upstream: tuple[str, int]) -> int:
        """Open a route (once per name) and return its loopback port."""
        if name in self.routes:
            return self.routes[name].port
        route = Route(name=name, upstream=upstream)
        route.server = await asyncio.start_server(
            lambda r, w: self._serve(route, r, w), "127.0.0.1", 0)
        route.port = route.server.sockets[0].getsockname()[1]
        self.routes[name] = route
        return route.port

    async def start(self) -> None:
        # Faults left by an earlier run (a chaos run killed halfway) must not outlive it.
        write_faults(self.faults_file, {})
        self._watch = asyncio.create_task(self._watch_file(), name="fault-proxy-watch")

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for route in self.routes.values():
            if route.server is not None:
                route.server.close()
            for pair in list(route.connections):
                for w in pair:
                    w.transport.abort()

    def apply(self, faults: dict[str, Fault]) -> None:
        """Set every route's fault (routes not named: none); cut connections on a new reset."""
        for name, route in self.routes.items():
            new = faults.get(name, Fault(reset_seq=route.fault.reset_seq))
            if new.reset_seq > route.fault.reset_seq:
                for pair in list(route.connections):
                    for w in pair:
                        _reset(w)
                route.resets += 1
            route.fault = new

    async def _watch_file(self) -> None:
        mtime: float | None = None
        while True:
            try:
                now = self.faults_file.stat().st_mtime_ns
            except FileNotFoundError:
                now = None
            if now != mtime:
                mtime = now
                try:
                    self.apply(read_faults(self.faults_file))
                    self._last_error = None
                except ValueError as exc:
                    if str(exc) != self._last_error:
                        self._last_error = str(exc)
                        self._on_error(str(exc))
            await asyncio.sleep(POLL_S)

    async def _serve(self, route: Route, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        route.accepted += 1
        if route.fault.refuse:
            _reset(client_w)
            return
        try:
            up_r, up_w = await asyncio.open_connection(*route.upstream)
        except OSError:
            _reset(client_w)  # the engine is down: the client sees what it would directly
            return
        pair = (client_w, up_w)
        route.connections.add(pair)
        pipes = {asyncio.create_task(self._pipe(route, client_r, up_w)),
                 asyncio.create_task(self._pipe(route, up_r, client_w))}
        try:
            # Either side ending ends the connection: neither protocol half-closes.
            _done, pending = await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        finally:
            route.connections.discard(pair)
            for w in pair:
                w.close()

    @staticmethod
    async def _pipe(route: Route, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(CHUNK):
                if route.fault.latency_ms > 0:
                    await asyncio.sleep(route.fault.latency_ms / 1000)
                writer.write(data)
                await writer.drain()
