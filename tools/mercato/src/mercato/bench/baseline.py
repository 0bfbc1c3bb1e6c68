"""``mercato bench orders --save-baseline / --compare`` and ``mercato bench compare``: a run's
headline figures beside those of the build before.

A run's figures are kept as a small JSON document (a *baseline*): the figures, the commit
and machine they were measured on, the rate and duration. A full ``bench orders`` report
holds the same figures and is read as well, so any earlier report can be the "before".

The machine is shared and its speed drifts, so one run against one run says little:
``compare`` takes several runs on each side and sets their **medians** side by side with
the ratio after / before. Alternate the builds (before, after, after, before, ...) so a
noisy minute hits both.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

KIND = "mercato-bench-orders-baseline"
VERSION = 1
CLIENT = "bench client"

# (key, label, unit, lower is better): the headline figures, in the order they are printed.
FIGURES: tuple[tuple[str, str, str, bool], ...] = (
    ("cpu_ms_per_order", "CPU per completed order (platform)", "ms", True),
    ("cpu_ms_per_order_above_idle", "  above idle", "ms", True),
    ("completed_per_s", "completed orders", "/s", False),
    ("ttt_p50_ms", "time to terminal p50", "ms", True),
    ("ttt_p99_ms", "time to terminal p99", "ms", True),
    ("accept_p50_ms", "acceptance p50", "ms", True),
)


class BaselineError(Exception):
    """A baseline file that cannot be read as one: the message says which and why."""


def platform_cpu_ms(per_order_s: dict[str, float]) -> float:
    """CPU ms per order of the platform's processes: every group but the bench's own client."""
    return round(1000 * sum(v for k, v in per_order_s.items() if k != CLIENT), 3)


def figures_of(report: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a ``bench orders`` report (or of a baseline: returned as is)."""
    if report.get("kind") == KIND:
        return dict(report["figures"])
    s = report.get("summary") or {}
    per = report.get("cpu_s_per_order") or {}
    above = report.get("cpu_s_per_order_above_idle") or {}
    return {
        "cpu_ms_per_order": platform_cpu_ms(per) if per else None,
        "cpu_ms_per_order_above_idle": platform_cpu_ms(above) if above else None,
        "completed_per_s": s.get("completed_per_s"),
        "ttt_p50_ms": s.get("ttt_p50_ms"),
        "ttt_p99_ms": s.get("ttt_p99_ms"),
        "accept_p50_ms": s.get("accept_p50_ms"),
        "completed": s.get("completed"),
        "clean_check": not (report.get("check") or {}).get("violations"),
        "cpu_ms_per_order_by_process": {k: round(v * 1000, 3) for k, v in per.items()
                                        if k != CLIENT},
        "cpu_ms_per_order_above_idle_by_process": {k: round(v * 1000, 3)
                                                   for k, v in above.items() if k != CLIENT},
        "work_per_order": dict(report.get("work_per_order") or {}),
    }


def current_commit(repo: Path | None = None) -> dict[str, Any]:
    """The checkout's commit (short hash) and whether it had uncommitted changes."""
    from mercato.runtime.services import repo_root

    where = str(repo or repo_root())
    try:
        head = subprocess.run(["git", "-C", where, "rev-parse", "--short=10", "HEAD"],  # noqa: S603, S607
                              capture_output=True, text=True, timeout=10, check=True).stdout
        dirty = subprocess.run(["git", "-C", where, "status", "--porcelain",  # noqa: S603, S607
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": head.strip() or None, "dirty": bool(dirty.strip())}


def platform_checkout(groups: dict[str, list[int]]) -> Path | None:
    """The checkout the running platform's services were started from (their working
    directory), which need not be this CLI's: the figures belong to the platform's commit."""
    import psutil

    for name in ("orders", "payments", "inventory"):
        for pid in groups.get(name, []):
            try:
                return Path(psutil.Process(pid).cwd())
            except psutil.Error:
                continue
    return None


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "node": platform.node()}


def baseline_of(report: dict[str, Any], commit: dict[str, Any] | None = None,
                at: datetime | None = None) -> dict[str, Any]:
    """The document ``--save-baseline`` writes for a finished run."""
    cfg = report.get("config") or {}
    return {"kind": KIND, "version": VERSION,
            "at": (at or datetime.now(UTC)).isoformat(),
            **(commit if commit is not None else current_commit()),
            "machine": report.get("machine") or machine(),
            "rate": cfg.get("rate"), "duration_s": cfg.get("duration_s"),
            "decline_share": cfg.get("decline_share"),
            "figures": figures_of(report)}


def read_json(path: Path) -> Any:
    """A saved run's JSON, or a BaselineError that says what is wrong with the file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise BaselineError(f"{path}: no such file") from exc
    except (OSError, ValueError) as exc:
        raise BaselineError(f"{path}: not a JSON report ({exc})") from exc


def load_run(path: Path) -> dict[str, Any]:
    """A baseline document, or a full ``bench orders`` report turned into one."""
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise BaselineError(f"{path}: not a bench orders report or baseline")
    if doc.get("kind") == KIND:
        if doc.get("version") != VERSION or not isinstance(doc.get("figures"), dict):
            raise BaselineError(f"{path}: baseline of an unknown version "
                                f"({doc.get('version')!r})")
        return doc
    if doc.get("benchmark") == "orders" and "summary" in doc:
        return baseline_of(doc, commit={"commit": doc.get("commit"),
                                        "dirty": doc.get("dirty")},
                           at=_parse_at(doc.get("at")))
    raise BaselineError(f"{path}: not a bench orders report or baseline (no 'summary', "
                        f"no kind {KIND!r})")


def _parse_at(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _median(values: list[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, int | float)]
    return statistics.median(nums) if nums else None


def _ratio(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before == 0:
        return None
    return after / before


def compare(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of each side's runs and after / before for each headline figure and for each
    process's CPU ms per order; also what differs between the sides' settings."""
    rows = []
    for key, label, unit, lower in FIGURES:
        b = _median([r["figures"].get(key) for r in before])
        a = _median([r["figures"].get(key) for r in after])
        rows.append({"measure": key, "label": label, "unit": unit, "before": b, "after": a,
                     "ratio": _ratio(b, a), "lower_is_better": lower,
                     "before_runs": [r["figures"].get(key) for r in before],
                     "after_runs": [r["figures"].get(key) for r in after]})
    procs: list[str] = []
    for r in [*before, *after]:
        for name in r["figures"].get("cpu_ms_per_order_by_process") or {}:
            if name not in procs:
                procs.append(name)
    by_process = []
    for name in procs:
        b = _median([(r["figures"].get("cpu_ms_per_order_by_process") or {}).get(name, 0.0)
                     for r in before])
        a = _median([(r["figures"].get("cpu_ms_per_order_by_process") or {}).get(name, 0.0)
                     for r in after])
        by_process.append({"process": name, "before": b, "after": a, "ratio": _ratio(b, a)})
    by_process.sort(key=lambda row: -max(row["before"] or 0.0, row["after"] or 0.0))
    notes = []
    for field in ("rate", "duration_s", "decline_share"):
        sides = ({r.get(field) for r in before}, {r.get(field) for r in after})
        if sides[0] != sides[1] or len(sides[0]) > 1:
            notes.append(f"{field} differs: before {sorted(map(str, sides[0]))}, after "
                         f"{sorted(map(str, sides[1]))}")
    hosts = {(r.get("machine") or {}).get("node") for r in [*before, *after]}
    if len(hosts - {None}) > 1:
        notes.append(f"runs come from different machines: {sorted(h for h in hosts if h)}")
    if any(not r["figures"].get("clean_check", True) for r in [*before, *after]):
        notes.append("a run's mercato check was not clean")
    return {"figures": rows, "by_process": by_process, "notes": notes,
            "before": [_who(r) for r in before], "after": [_who(r) for r in after]}


def _who(run: dict[str, Any]) -> dict[str, Any]:
    return {"commit": run.get("commit"), "dirty": run.get("dirty"), "at": run.get("at"),
            "rate": run.get("rate"), "duration_s": run.get("duration_s")}


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _side(runs: list[dict[str, Any]]) -> str:
    commits = []
    for r in runs:
        c = r.get("commit") or "?"
        c += "+dirty" if r.get("dirty") else ""
        if c not in commits:
            commits.append(c)
    return ", ".join(commits)


def print_comparison(result: dict[str, Any], console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    nb, na = len(result["before"]), len(result["after"])
    table = Table(title=f"before ({_side(result['before'])}, {nb} run(s)) against after "
                        f"({_side(result['after'])}, {na} run(s)): medians")
    for col, just in (("measure", "left"), ("before", "right"), ("after", "right"),
                      ("after / before", "right"), ("runs before | after", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for row in result["figures"]:
        ratio = row["ratio"]
        colour = "" if ratio is None or abs(ratio - 1) < 0.03 else (
            "green" if (ratio < 1) == row["lower_is_better"] else "red")
        shown = _fmt(ratio, ".2f") if not colour else f"[{colour}]{ratio:.2f}[/]"
        runs = (" ".join(_fmt(v) for v in row["before_runs"]) + " | "
                + " ".join(_fmt(v) for v in row["after_runs"]))
        table.add_row(row["label"], f"{_fmt(row['before'])} {row['unit']}",
                      f"{_fmt(row['after'])} {row['unit']}", shown, runs)
    console.print(table)
    if result["by_process"]:
        procs = Table(title="CPU ms per completed order, per process (medians)")
        for col, just in (("process", "left"), ("before", "right"), ("after", "right"),
                          ("after / before", "right")):
            procs.add_column(col, justify=just)  # type: ignore[arg-type]
        for row in result["by_process"]:
            procs.add_row(row["process"], _fmt(row["before"], ".2f"), _fmt(row["after"], ".2f"),
                          _fmt(row["ratio"], ".2f"))
        console.print(procs)
    for note in result["notes"]:
        console.print(f"[yellow]note:[/] {note}")
