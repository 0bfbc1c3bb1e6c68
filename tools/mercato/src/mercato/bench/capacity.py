"""``mercato bench capacity``: cores per process group for a target order rate, derived from
measured ``bench orders`` runs (docs/performance.md's capacity model is this command's
``--markdown`` output over the runs kept in ``bench/reference``).

The model is linear: a group's cores = its CPU ms per order (the median over the runs) times
orders per second / 1000, planned at ``utilisation`` (0.7: headroom for bursts and for
the machine's noise). It uses each group's cost *above idle* when the runs hold it (the
marginal cost of an order; idle work does not grow with the rate) and says so when it falls
back to the total.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from mercato.bench.baseline import load_run

UTILISATION = 0.7
RATES = (100, 1000)
REST_BELOW_MS = 1.0  # groups cheaper than this per order are summed as "the rest"
REST = "the rest"


@dataclass(frozen=True)
class Row:
    group: str
    ms_per_order: float
    cores: tuple[float, ...]


@dataclass(frozen=True)
class Model:
    rows: list[Row]
    rates: tuple[int, ...]
    utilisation: float
    basis: str  # "above idle" or "total"
    runs: int
    rest: list[str]

    @property
    def total(self) -> Row:
        ms = sum(r.ms_per_order for r in self.rows)
        return Row("total", ms, tuple(cores_for(ms, rate, self.utilisation)
                                      for rate in self.rates))


def cores_for(ms_per_order: float, rate: float, utilisation: float) -> float:
    return ms_per_order * rate / 1000 / utilisation


def model(runs: list[dict[str, Any]], *, rates: tuple[int, ...] = RATES,
          utilisation: float = UTILISATION) -> Model:
    """The capacity model of ``runs`` (baselines as ``load_run`` returns them)."""
    if not runs:
        raise ValueError("no runs to derive the model from")
    above = [r["figures"].get("cpu_ms_per_order_above_idle_by_process") for r in runs]
    basis = "above idle" if all(above) else "total"
    per_run = above if basis == "above idle" else [
        r["figures"].get("cpu_ms_per_order_by_process") or {} for r in runs]
    groups = sorted({g for costs in per_run for g in costs})
    medians = {g: statistics.median(float(costs.get(g, 0.0)) for costs in per_run)
               for g in groups}
    rest = sorted(g for g, ms in medians.items() if ms < REST_BELOW_MS)
    kept = sorted((g for g in groups if g not in rest), key=lambda g: -medians[g])
    rows = [Row(g, medians[g], tuple(cores_for(medians[g], rate, utilisation)
                                     for rate in rates)) for g in kept]
    if rest:
        ms = sum(medians[g] for g in rest)
        rows.append(Row(REST, ms, tuple(cores_for(ms, rate, utilisation) for rate in rates)))
    return Model(rows, rates, utilisation, basis, len(runs), rest)


def load_model(paths: list[Any], **kwargs: Any) -> Model:
    return model([load_run(p) for p in paths], **kwargs)


def _cores(value: float) -> str:
    return f"{value:.1f}" if value < 10 else str(math.ceil(value))


def markdown(m: Model) -> str:
    """The model as docs/performance.md shows it."""
    head = ["process", f"ms/order ({m.basis})",
            *(f"cores at {rate:,} orders/s" for rate in m.rates)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in m.rows:
        name = f"{REST} ({', '.join(m.rest)})" if row.group == REST else row.group
        lines.append("| " + " | ".join([name, f"{row.ms_per_order:.1f}",
                                        *(_cores(c) for c in row.cores)]) + " |")
    t = m.total
    lines.append("| " + " | ".join(["**total**", f"**{t.ms_per_order:.1f}**",
                                    *(f"**{_cores(c)}**" for c in t.cores)]) + " |")
    return "\n".join(lines) + "\n"


def print_model(m: Model, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    table = Table(title=f"cores needed at {m.utilisation:.0%} utilisation, from the medians "
                        f"of {m.runs} run(s), CPU ms per order {m.basis}")
    table.add_column("process")
    table.add_column("ms/order", justify="right")
    for rate in m.rates:
        table.add_column(f"cores at {rate:,}/s", justify="right")
    for row in [*m.rows, m.total]:
        table.add_row(row.group, f"{row.ms_per_order:.1f}", *(_cores(c) for c in row.cores))
    console.print(table)
    if m.basis == "total":
        console.print("[yellow]note:[/] the runs hold no per-process cost above idle (saved "
                      "before it was kept): the model uses the totals, idle work included")
