"""``mercato bench telemetry``: what telemetry on by default costs per order.

Two scratch homes, one started with telemetry (the console receiving every span and
indexing every log line; services and Envoy exporting) and one with ``--no-telemetry``;
``mercato bench orders`` at the same rate on each, in alternating order round after round
(so a noisy minute of the machine hits both), each platform started fresh for its run.
Reported: total CPU per completed order (every process of the platform, the console
included) for both, their medians and the ratio; and the console's resident memory at the
end of each telemetry run.
"""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mercato.bench.baseline import platform_cpu_ms
from mercato.runtime.control import read_state
from mercato.runtime.paths import Home

TARGET_RATIO = 1.15


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mercato(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mercato.cli", *args, "--home", str(home)],  # noqa: S603
                          capture_output=True, text=True, timeout=timeout, check=False)


def _rss_mb(home: Path, name: str) -> float | None:
    pid = ((read_state(Home(home)) or {}).get("processes") or {}).get(name, {}).get("pid")
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _edge_routes(port: int, timeout: float = 90.0) -> None:
    """Ready processes are not yet routed: the edge learns them from the registry."""
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/catalog/products", timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the edge did not route to catalog in time")
        time.sleep(0.5)


def one_run(home: Path, telemetry: bool, rate: float, duration: float,
            say: Any) -> dict[str, Any]:
    port = _free_port()
    up_args = ["up", "--detach", "--port", str(port)]
    if not telemetry:
        up_args.append("--no-telemetry")
    started = _mercato(home, *up_args)
    if started.returncode != 0:
        raise RuntimeError(f"mercato up failed:\n{started.stdout}\n{started.stderr}")
    _edge_routes(port)
    report = home / "bench-orders.json"
    report.unlink(missing_ok=True)  # never read an earlier run's figures as this one's
    try:
        ran = _mercato(home, "bench", "orders", "--rate", str(rate), "--duration",
                       str(duration), "--report", str(report))
        if not report.exists() or ran.returncode == 2:
            raise RuntimeError(f"bench orders failed:\n{ran.stdout}\n{ran.stderr}")
        doc = json.loads(report.read_text())
        rss = _rss_mb(home, "console") if telemetry else None
    finally:
        _mercato(home, "down")
    per_order = doc["cpu_s_per_order"]
    out = {"telemetry": telemetry, "cpu_ms_per_order": round(platform_cpu_ms(per_order), 2),
           "console_cpu_ms_per_order": round(1000 * per_order.get("console", 0.0), 2),
           "completed": doc["summary"]["completed"],
           "ttt_p99_ms": doc["summary"]["ttt_p99_ms"], "console_rss_mb": rss}
    say(f"telemetry {'on ' if telemetry else 'off'}: {out['cpu_ms_per_order']} ms CPU/order "
        f"({out['completed']} orders, console {out['console_cpu_ms_per_order']} ms"
        f"{f', console RSS {rss} MB' if rss else ''})")
    return out


def alternating_runs(name: str, rounds: int,
                     run: Callable[[Path, bool], dict[str, Any]]) -> list[dict[str, Any]]:
    """``run(home, flag)`` for flag False then True, True then False, ... ``rounds`` times,
    each on a fresh platform in a scratch home of its flag's (so a noisy minute of the
    machine hits both); every platform stopped and its home removed at the end."""
    root = Path(tempfile.mkdtemp(prefix=f"mercato-bench-{name}-"))
    homes = {True: root / "on", False: root / "off"}
    runs: list[dict[str, Any]] = []
    try:
        for i in range(rounds):
            for flag in ((False, True) if i % 2 == 0 else (True, False)):
                runs.append(run(homes[flag], flag))
    finally:
        for h in homes.values():
            if h.exists():
                _mercato(h, "down")
        shutil.rmtree(root, ignore_errors=True)
    return runs


def run_telemetry_bench(rate: float, duration: float, rounds: int,
                        report_file: Path | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    try:
        runs = alternating_runs("telemetry", rounds, lambda home, telemetry: one_run(
            home, telemetry, rate, duration, console.print))
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        console.print(f"[red]bench telemetry:[/] {exc}")
        return 2
    on = [r["cpu_ms_per_order"] for r in runs if r["telemetry"]]
    off = [r["cpu_ms_per_order"] for r in runs if not r["telemetry"]]
    ratio = statistics.median(on) / statistics.median(off)
    table = Table(title=f"CPU per completed order, rate {rate}/s, {rounds} alternating rounds")
    for col in ("telemetry", "runs (ms/order)", "median ms/order", "p99 time to terminal"):
        table.add_column(col)
    for flag, values in ((False, off), (True, on)):
        p99 = statistics.median(r["ttt_p99_ms"] or 0 for r in runs if r["telemetry"] == flag)
        table.add_row("on" if flag else "off", ", ".join(f"{v:.1f}" for v in values),
                      f"{statistics.median(values):.1f}", f"{p99:.0f} ms")
    console.print(table)
    rss = [r["console_rss_mb"] for r in runs if r["console_rss_mb"]]
    console.print(f"on / off = [bold]{ratio:.3f}[/] (target ≤ {TARGET_RATIO}); console RSS "
                  f"at the end of its runs: {', '.join(f'{m} MB' for m in rss) or 'n/a'}")
    if report_file is not None:
        report_file.parent.mkdir(parents=True, exist_ok=True)
        report_file.write_text(json.dumps({"rate": rate, "duration_s": duration,
                                           "rounds": rounds, "runs": runs,
                                           "ratio": round(ratio, 4)}, indent=1) + "\n")
    return 0 if ratio <= TARGET_RATIO else 3
