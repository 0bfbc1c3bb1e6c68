"""The runtime home (``.mercato/``) and the ports fixed on the first ``up``.

Ports live in ``config.json`` so a second ``up`` reuses them: clients, bookmarks and the
PostgreSQL data directory stay valid across ``down``/``up``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import socket
import sys
import tempfile
from collections.abc import Container
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_EDGE_PORT = 8080
# A fresh home proposes ports in 20000-28999, outside Linux's ephemeral range (so an outgoing
# connection never sits on them), at an offset derived from the home's path (so two homes,
# say a developer's and a test's, do not propose the same ones). Taken ones fall back to a
# free ephemeral port; either way config.json then keeps them.
_PORT_BASE, _PORT_SLOTS = 20000, 900
_PORT_OFFSETS = {"postgres": 0, "nats": 1, "envoy_admin": 2, "console": 3, "prometheus": 4}


def proposed_port(root: Path, name: str) -> int:
    slot = int(hashlib.sha256(str(root).encode()).hexdigest(), 16) % _PORT_SLOTS
    return _PORT_BASE + slot * 10 + _PORT_OFFSETS[name]


def default_home() -> Path:
    env = os.environ.get("MERCATO_HOME")
    return Path(env) if env else Path.cwd() / ".mercato"


def venv_bin(name: str) -> str | None:
    """A tool installed beside this interpreter (``nats-server``), else one on PATH."""
    import shutil

    here = Path(sys.executable).parent
    return shutil.which(name, path=str(here)) or shutil.which(name)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Like our servers (PostgreSQL, NATS, Envoy) do: connections of a previous run in
        # TIME_WAIT must not count as "taken", only a listener does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port(host: str = "127.0.0.1", avoid: Container[int] = ()) -> int:
    """A port no program listens on, chosen below the kernel's ephemeral range.

    A port the kernel hands out with ``bind(0)`` comes from the ephemeral range, the same pool
    every outgoing connection takes its source port from: by the time PostgreSQL, NATS or
    Envoy binds it (at once, or at the next ``up``), some connection may be using it and the
    bind fails. Ports below that range are only ever taken by listeners, which we check for.

    ``avoid``: ports already handed to processes that may not have bound them yet (a check
    for a listener cannot see those).
    """
    low, _ = _ephemeral_range()
    floor = 10_000
    if low - floor >= 1_000:
        rng = random.SystemRandom()
        for _ in range(64):
            port = rng.randrange(floor, low)
            if port not in avoid and port_is_free(port, host) \
                    and port_is_free(port, "0.0.0.0"):
                return port
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write via a temp file + rename so readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass
class Ports:
    postgres: int
    nats: int
    edge: int
    envoy_admin: int
    # The console: its web UI and the OTLP/HTTP receiver every process exports to.
    console: int
    # The console's alert evaluator (Prometheus), when installed.
    prometheus: int


class Home:
    """Paths inside one runtime home; creating the object touches nothing on disk."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).expanduser().resolve() if root else default_home().resolve()

    def __repr__(self) -> str:
        return f"Home({str(self.root)!r})"

    config_file = property(lambda self: self.root / "config.json")
    secrets_dir = property(lambda self: self.root / "secrets")
    pg_dir = property(lambda self: self.root / "pg")
    pg_data = property(lambda self: self.root / "pg" / "data")
    nats_dir = property(lambda self: self.root / "nats")
    envoy_dir = property(lambda self: self.root / "envoy")
    logs_dir = property(lambda self: self.root / "logs")
    run_dir = property(lambda self: self.root / "run")
    # 0700: unix sockets only the home's owner may reach (Envoy's admin).
    sockets_dir = property(lambda self: self.root / "sockets")
    envoy_admin_socket = property(lambda self: self.root / "sockets" / "envoy-admin.sock")
    pid_file = property(lambda self: self.root / "run" / "supervisor.pid")
    state_file = property(lambda self: self.root / "run" / "state.json")
    telemetry_db = property(lambda self: self.root / "telemetry" / "telemetry.db")
    supervisor_socket = property(lambda self: self.root / "sockets" / "supervisor.sock")

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def ensure(self) -> None:
        for d in (self.root, self.pg_dir, self.nats_dir, self.envoy_dir, self.logs_dir,
                  self.run_dir):
            d.mkdir(parents=True, exist_ok=True)
        for private in (self.secrets_dir, self.sockets_dir):
            private.mkdir(mode=0o700, exist_ok=True)
            os.chmod(private, 0o700)

    # -- config.json -------------------------------------------------------------------------

    def load_config(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.config_file.read_text()))
        except FileNotFoundError:
            return {}

    def ports(self, edge_port: int | None = None) -> Ports:
        """The ports of this home, choosing and saving them on first use.

        ``edge_port`` (``--port``) overrides and is remembered, so a later plain ``up`` keeps it.
        """
        cfg = self.load_config()
        saved = cfg.get("ports", {})
        changed = False
        chosen: dict[str, int] = {}
        taken: set[int] = set()
        for name in ("postgres", "nats", "envoy_admin", "console", "prometheus"):
            port = saved.get(name)
            if not isinstance(port, int):
                proposed = proposed_port(self.root, name)
                port = proposed if port_is_free(proposed) else free_port()
                while port in taken:
                    port = free_port()
                changed = True
            chosen[name] = port
            taken.add(port)
        edge = edge_port if edge_port is not None else saved.get("edge", DEFAULT_EDGE_PORT)
        if edge != saved.get("edge"):
            changed = True
        ports = Ports(postgres=chosen["postgres"], nats=chosen["nats"], edge=int(edge),
                      envoy_admin=chosen["envoy_admin"], console=chosen["console"],
                      prometheus=chosen["prometheus"])
        if changed:
            cfg["ports"] = asdict(ports)
            self.root.mkdir(parents=True, exist_ok=True)
            write_atomic(self.config_file, json.dumps(cfg, indent=2) + "\n")
        return ports

    # -- secrets -----------------------------------------------------------------------------

    def read_secret(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads((self.secrets_dir / f"{name}.json").read_text()))
        except FileNotFoundError:
            return None

    def write_secret(self, name: str, value: dict[str, Any]) -> None:
        self.secrets_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(self.secrets_dir, 0o700)
        write_atomic(self.secrets_dir / f"{name}.json", json.dumps(value, indent=2) + "\n",
                     mode=0o600)
