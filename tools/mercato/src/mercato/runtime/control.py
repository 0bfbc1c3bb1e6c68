"""Operations on a home from outside the supervisor: is it running, start it, stop it.

``mercato up/down/status`` are thin Rich front-ends over these; tests call them directly.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mercato.runtime.cleanup import find_leftovers, kill_leftovers
from mercato.runtime.paths import Home
from mercato.runtime.proc import pid_alive, popen

__all__ = ["find_leftovers", "kill_leftovers", "read_state", "running_pid", "spawn_supervisor",
           "stop_platform", "tail"]


def read_state(home: Home) -> dict[str, Any] | None:
    try:
        return dict(json.loads(home.state_file.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def running_pid(home: Home) -> int | None:
    """The supervisor's pid if one holds this home's lock, else None."""
    lock_path = home.run_dir / "supervisor.lock"
    if not lock_path.exists():
        return None
    with open(lock_path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            fcntl.flock(fh, fcntl.LOCK_UN)
            return None
    # Locked: a supervisor runs. It writes its pid file right after taking the lock.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            pid = int(home.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            time.sleep(0.02)
            continue
        if pid_alive(pid):
            return pid
        time.sleep(0.02)
    return None


def spawn_supervisor(home: Home, *, scale: list[str] | None = None,
                     services: list[str] | None = None, gateway: bool = True,
                     env: dict[str, str] | None = None, fault_proxy: bool = False,
                     telemetry: bool = True, trace_sampling: str | None = None,
                     trace_sql: bool = False, trace_publish: bool = False,
                     with_: list[str] | None = None) -> subprocess.Popen[bytes]:
    """Start the supervisor detached (own session, no controlling terminal)."""
    home.ensure()
    argv = [sys.executable, "-m", "mercato.runtime.supervisor", "--home", str(home.root)]
    for item in scale or []:
        argv += ["--scale", item]
    for item in services or []:
        argv += ["--service", item]
    for item in with_ or []:
        argv += ["--with", item]
    if not gateway:
        argv.append("--no-gateway")
    if fault_proxy:
        argv.append("--fault-proxy")
    if not telemetry:
        argv.append("--no-telemetry")
    if trace_sampling is not None:
        argv += ["--trace-sampling", trace_sampling]
    if trace_sql:
        argv.append("--trace-sql")
    if trace_publish:
        argv.append("--trace-publish")
    log = open(home.log_file("supervisor"), "ab")
    try:
        return popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True, env={**os.environ, **(env or {})})
    finally:
        log.close()


def stop_platform(home: Home, *, timeout: float = 60.0,
                  on_progress: Callable[[dict[str, Any] | None], None] | None = None
                  ) -> tuple[bool, list[str]]:
    """SIGTERM the supervisor, wait for it, then kill whatever of this home is left.

    Returns (was_running, leftovers described).
    """
    pid = running_pid(home)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            if on_progress is not None:
                on_progress(read_state(home))
            time.sleep(0.1)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    leftovers = kill_leftovers(home)
    return pid is not None, leftovers


def tail(path: Path | str, lines: int = 30) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    return data.splitlines()[-lines:]
