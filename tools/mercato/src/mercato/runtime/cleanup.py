"""Find and stop processes that belong to a home but outlived their supervisor.

Children die with the supervisor through the parent-death signal, but a grandchild, a
PostgreSQL still finishing its shutdown, or a process started by an older mercato may not.
Every child carries ``MERCATO_RUNTIME_HOME=<home>`` in its environment, which is how they are
recognised without trusting pids saved on disk.
"""

from __future__ import annotations

import contextlib
import os
import time

import psutil

from mercato.runtime.paths import Home

ENV_MARK = "MERCATO_RUNTIME_HOME"
_ENGINES = {"postgres", "nats-server", "envoy"}


def _related_to_self() -> set[int]:
    me = psutil.Process()
    return {me.pid, *(p.pid for p in me.parents())}


def find_leftovers(home: Home) -> list[psutil.Process]:
    root = str(home.root)
    markers = (str(home.pg_data), str(home.nats_dir) + os.sep, str(home.envoy_dir) + os.sep)
    skip = _related_to_self()
    found: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid", "cmdline", "environ", "status"]):
        info = proc.info
        if info["pid"] in skip or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        env = info.get("environ") or {}
        cmdline = info.get("cmdline") or []
        # By path only for our engines: `tail -f .mercato/nats/...` is the user's, not ours.
        engine = bool(cmdline) and os.path.basename(cmdline[0]) in _ENGINES
        if env.get(ENV_MARK) == root or (engine and any(
                arg == m.rstrip(os.sep) or arg.startswith(m) for arg in cmdline
                for m in markers)):
            found.append(proc)
    return found


def kill_leftovers(home: Home, timeout: float = 10.0) -> list[str]:
    """Stop every leftover process of ``home``; returns a description of each one found."""
    from mercato.runtime.postgres import Postgres

    procs = find_leftovers(home)
    if not procs:
        return []
    described = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            described.append(f"{p.pid} {' '.join(p.cmdline()[:3])}")
    # PostgreSQL first through pg_ctl: a fast shutdown keeps the cluster consistent.
    if any("postgres" in (p.info.get("cmdline") or [""])[0] for p in procs):
        with contextlib.suppress(Exception):
            Postgres(home, 0).pg_ctl_stop(timeout)
    alive = [p for p in procs if p.is_running()]
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(alive, timeout=min(timeout, 5.0))
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=3.0)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and find_leftovers(home):
        time.sleep(0.05)
    return described
