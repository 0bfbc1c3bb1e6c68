"""``mercato bench idle``: what a running platform burns with no orders at all.

Issue 17 counts every process's CPU in the cost of an order, idle work included: timers,
heartbeats, probes, polls and scrapes. ``bench orders`` subtracts a 2 s sample of it; this
measures it alone, over a longer window, per process group, and saves it to compare builds
(``bench/idle.sh`` alternates two checkouts' fresh platforms and prints the medians side by
side with ``--before/--after``).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mercato.bench.baseline import (
    CLIENT,
    BaselineError,
    current_commit,
    machine,
    platform_checkout,
    read_json,
)
from mercato.bench.measure import MACHINE, sample_cpu

KIND = "mercato-bench-idle"
VERSION = 1
PLATFORM = "platform"


def measure(groups: dict[str, list[int]], duration_s: float,
            say: Callable[[str], None] = lambda _: None,
            step_s: float = 5.0) -> dict[str, float]:
    """Cores each group used over ``duration_s``, the platform's sum and the machine's."""
    first, started = sample_cpu(groups), time.monotonic()
    while (left := duration_s - (time.monotonic() - started)) > 0:
        time.sleep(min(step_s, left))
        say(f"{time.monotonic() - started:5.0f} s of {duration_s:g}")
    last, wall = sample_cpu(groups), time.monotonic() - started
    cores = {who: max(0.0, last[who] - first[who]) / wall for who in last if who in first}
    cores.pop(CLIENT, None)
    cores[PLATFORM] = sum(v for who, v in cores.items() if who != MACHINE)
    return {who: round(v, 4) for who, v in cores.items()}


def document(cores: dict[str, float], duration_s: float,
             checkout: Path | None) -> dict[str, Any]:
    return {"kind": KIND, "version": VERSION, "at": datetime.now(UTC).isoformat(),
            **current_commit(checkout), "machine": machine(), "duration_s": duration_s,
            "cores": cores}


def load(path: Path) -> dict[str, Any]:
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("kind") != KIND or not isinstance(
            doc.get("cores"), dict):
        raise BaselineError(f"{path}: not a bench idle run (save one with mercato bench "
                            "idle --save FILE)")
    return doc


def compare(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per group: the medians of each side's runs and after / before; the platform first."""
    groups = {g for run in [*before, *after] for g in run["cores"]} - {MACHINE}
    rows = []
    for group in groups:
        b = statistics.median(run["cores"].get(group, 0.0) for run in before)
        a = statistics.median(run["cores"].get(group, 0.0) for run in after)
        rows.append({"group": group, "before": b, "after": a,
                     "ratio": a / b if b else None,
                     "before_runs": [run["cores"].get(group, 0.0) for run in before],
                     "after_runs": [run["cores"].get(group, 0.0) for run in after]})
    rows.sort(key=lambda r: (r["group"] != PLATFORM, -max(r["before"], r["after"])))
    return rows


def print_cores(cores: dict[str, float], console: Any) -> None:
    from rich.table import Table

    table = Table(title="idle: cores each process group uses with no orders")
    table.add_column("process")
    table.add_column("cores", justify="right")
    for who, v in sorted(cores.items(), key=lambda kv: -kv[1]):
        if who not in (MACHINE, PLATFORM):
            table.add_row(who, f"{v:.3f}")
    table.add_row("[bold]platform[/]", f"[bold]{cores.get(PLATFORM, 0.0):.3f}[/]")
    table.add_row("machine (all processes)", f"{cores.get(MACHINE, 0.0):.3f}")
    console.print(table)


def print_comparison(rows: list[dict[str, Any]], n_before: int, n_after: int,
                     console: Any) -> None:
    from rich.table import Table

    table = Table(title=f"idle cores, medians of {n_before} run(s) before and {n_after} after")
    for col, just in (("process", "left"), ("before", "right"), ("after", "right"),
                      ("after / before", "right"), ("runs before | after", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for row in rows:
        runs = (" ".join(f"{v:.3f}" for v in row["before_runs"]) + " | "
                + " ".join(f"{v:.3f}" for v in row["after_runs"]))
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        name = f"[bold]{row['group']}[/]" if row["group"] == PLATFORM else row["group"]
        table.add_row(name, f"{row['before']:.3f}", f"{row['after']:.3f}", ratio, runs)
    console.print(table)


def run_idle_bench(home: Path, duration_s: float, save: Path | None) -> int:
    from rich.console import Console

    from mercato.bench.shop import BenchError, read_platform

    console = Console(highlight=False)
    try:
        target = read_platform(home)
    except BenchError as exc:
        console.print(f"[red]bench idle:[/] {exc}")
        return 2
    console.print(f"measuring what the platform burns idle over {duration_s:g} s "
                  "(send it nothing meanwhile) …")
    cores = measure(target.groups, duration_s, lambda line: console.print(line))
    print_cores(cores, console)
    if save is not None:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps(document(cores, duration_s, platform_checkout(
            target.groups)), indent=1) + "\n")
        console.print(f"saved: {save}")
    return 0
