"""``mercato bench memory``: the platform's memory with the services forked from one
interpreter image (the zygote, ADR 0033) beside each started apart.

Per round, two fresh platforms in scratch homes, one after the other in alternating order:
``MERCATO_ZYGOTE=1`` and ``=0``. Each is measured idle (``settle`` seconds after the edge
routes to the catalog), then again after a short order load (copy-on-write pages a
service wrote to are its own from then on). The figure is the one ``mercato status``
prints: PSS summed over every process under the supervisor, so PostgreSQL's shared memory
and the zygote's shared pages count once (runtime/memory.py). Issue 17's target: the whole
platform idle at most 1.2 GB.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mercato.bench.telemetry import _edge_routes, _free_port, _mercato, alternating_runs

TARGET_MB = 1200.0
MB = 1 << 20


def _footprint_mb(home: Path) -> tuple[float, int]:
    res = _mercato(home, "status", "--json", timeout=60)
    doc = json.loads(res.stdout)
    return round(doc["memory"]["pss_bytes"] / MB, 1), int(doc["memory"]["processes"])


def one_run(home: Path, zygote: bool, settle_s: float, load_s: float,
            say: Any) -> dict[str, Any]:
    port = _free_port()
    env = {**os.environ, "MERCATO_ZYGOTE": "1" if zygote else "0"}
    t0 = time.monotonic()
    started = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "mercato.cli", "up", "--detach", "--port", str(port),
         "--home", str(home)], capture_output=True, text=True, timeout=600, check=False,
        env=env)
    if started.returncode != 0:
        raise RuntimeError(f"mercato up failed:\n{started.stdout}\n{started.stderr}")
    try:
        _edge_routes(port)
        up_s = time.monotonic() - t0
        time.sleep(settle_s)
        idle_mb, processes = _footprint_mb(home)
        after_mb = None
        if load_s > 0:
            report = home / "bench-orders.json"
            ran = _mercato(home, "bench", "orders", "--rate", "5", "--duration", str(load_s),
                           "--warmup", "2", "--report", str(report))
            if not report.exists() or ran.returncode == 2:
                raise RuntimeError(f"bench orders failed:\n{ran.stdout}\n{ran.stderr}")
            time.sleep(settle_s / 2)
            after_mb = _footprint_mb(home)[0]
    finally:
        _mercato(home, "down")
    mode = "zygote" if zygote else "apart"
    say(f"{mode:6}: idle {idle_mb:.0f} MB over {processes} processes"
        f"{f', after orders {after_mb:.0f} MB' if after_mb is not None else ''}; "
        f"up and routed in {up_s:.1f} s")
    return {"zygote": zygote, "idle_mb": idle_mb, "after_load_mb": after_mb,
            "processes": processes, "up_s": round(up_s, 1)}


def run_memory_bench(rounds: int, settle_s: float, load_s: float,
                     report_file: Path) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)

    def run(home: Path, zygote: bool) -> dict[str, Any]:
        console.print(f"[dim]starting a platform ({'zygote' if zygote else 'apart'})…[/]")
        return one_run(home, zygote, settle_s, load_s, console.print)

    try:
        runs = alternating_runs("memory", rounds, run)
    except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
        console.print(f"[red]bench memory:[/] {exc}")
        return 2

    def median(zygote: bool, key: str) -> float | None:
        values = [r[key] for r in runs if r["zygote"] == zygote and r[key] is not None]
        return statistics.median(values) if values else None

    table = Table(title=f"platform memory (PSS, shared pages once), {rounds} alternating "
                        f"rounds")
    for col in ("services", "idle MB (runs)", "idle median", "after orders median",
                "up and routed"):
        table.add_column(col)
    for zygote in (False, True):
        mine = [r for r in runs if r["zygote"] == zygote]
        after = median(zygote, "after_load_mb")
        table.add_row("forked from the zygote" if zygote else "started apart",
                      ", ".join(f"{r['idle_mb']:.0f}" for r in mine),
                      f"{median(zygote, 'idle_mb'):.0f} MB",
                      f"{after:.0f} MB" if after is not None else "-",
                      f"{median(zygote, 'up_s'):.1f} s")
    console.print(table)
    on, off = median(True, "idle_mb"), median(False, "idle_mb")
    assert on is not None and off is not None
    ratio = on / off
    held = on <= TARGET_MB
    console.print(f"idle ratio zygote/apart: [bold]{ratio:.2f}[/]; target idle ≤ "
                  f"{TARGET_MB:.0f} MB: [{'green' if held else 'red'}]"
                  f"{'held' if held else 'missed'}[/] ({on:.0f} MB)")
    report_file.parent.mkdir(parents=True, exist_ok=True)
    report_file.write_text(json.dumps({
        "command": "bench memory", "rounds": rounds, "settle_s": settle_s, "load_s": load_s,
        "runs": runs, "median_idle_mb": {"zygote": on, "apart": off},
        "median_after_load_mb": {"zygote": median(True, "after_load_mb"),
                                 "apart": median(False, "after_load_mb")},
        "ratio": round(ratio, 3), "target_mb": TARGET_MB, "target_held": held}, indent=2))
    console.print(f"report: {report_file}")
    return 0 if held else 1
