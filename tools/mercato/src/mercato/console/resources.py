"""Every process of the platform as the supervisor sees it (``run/state.json``), with what
the kernel says of it: resident memory, CPU share since the last look, uptime."""

from __future__ import annotations

import os
import time
from typing import Any

from mercato.runtime.control import read_state
from mercato.runtime.paths import Home
from mercato.runtime.services import SERVICES, api_path

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


def _proc(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, RSS bytes) of a process and its children that have exited."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/statm") as fh:
            rss_pages = int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    # Fields after the command: state is [0]; utime [11], stime [12].
    return (int(fields[11]) + int(fields[12])) / _TICKS, rss_pages * _PAGE


class Resources:
    def __init__(self, home: Home) -> None:
        self.home = home
        self._last: dict[int, tuple[float, float]] = {}  # pid -> (cpu s, wall s)

    def snapshot(self) -> dict[str, Any]:
        state = read_state(self.home) or {}
        urls = state.get("urls") or {}
        now = time.time()
        rows = []
        for name, p in sorted((state.get("processes") or {}).items()):
            pid = p.get("pid")
            cpu_pct = rss = None
            if pid:
                got = _proc(int(pid))
                if got is not None:
                    cpu, rss = got
                    before = self._last.get(pid)
                    if before is not None and now > before[1]:
                        cpu_pct = round(100 * (cpu - before[0]) / (now - before[1]), 1)
                    elif p.get("started_at") and now > p["started_at"]:
                        # First look: the average since the process started.
                        cpu_pct = round(100 * cpu / (now - p["started_at"]), 1)
                    self._last[pid] = (cpu, now)
            service = p.get("service")
            port = p.get("port")
            healthy = p.get("state") == "ready" and not p.get("not_live_since")
            rows.append({
                "name": name, "kind": p.get("kind"), "service": service, "pid": pid,
                "port": port, "state": p.get("state"), "healthy": healthy,
                "restarts": p.get("restarts", 0), "last_restart": p.get("last_restart"),
                "uptime_s": round(now - p["started_at"]) if p.get("started_at") and pid
                else None,
                "rss_bytes": rss, "cpu_percent": cpu_pct,
                "logs": f"/logs?source={name}",
                "docs": (urls.get("docs") or {}).get(service) if service else None,
                # Only the services sit behind the edge (the legacy shop has a port of its own).
                "api": api_path(service) if service in SERVICES else None,
                "metrics": f"http://127.0.0.1:{port}/metrics"
                if p.get("kind") == "service" and port else None,
            })
        live = {r["pid"] for r in rows if r["pid"]}
        self._last = {pid: v for pid, v in self._last.items() if pid in live}
        return {"phase": state.get("phase"), "ready_at": state.get("ready_at"),
                "processes": rows}
