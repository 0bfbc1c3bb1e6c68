"""``mercato bench orders``' verdict and tables: its targets and the Rich report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mercato.bench.baseline import CLIENT, platform_cpu_ms
from mercato.bench.measure import TRANSACTIONS_IN, transactions_by_service

# The bar decided in ADR 0011 (option 1): 10 orders/s offered, every order terminal with a
# time-to-terminal p99 under 1 s, and a clean `mercato check` (checked by the caller).
TARGET_ORDERS_PER_S = 10.0
TARGET_TTT_P99_MS = 1000.0
# A constant-arrival schedule sends within a few per cent of the asked rate.
SEND_RATE_SLACK = 0.95


def offered_enough(summary: dict[str, Any]) -> bool:
    rate = summary.get("offered_per_s")
    return rate is not None and rate >= TARGET_ORDERS_PER_S * SEND_RATE_SLACK


def meets_target(summary: dict[str, Any]) -> bool:
    p99 = summary.get("ttt_p99_ms")
    return (offered_enough(summary) and p99 is not None and p99 < TARGET_TTT_P99_MS
            and summary.get("not_terminal") == 0)



def default_reports_dir() -> Path:
    from mercato.bench.gateway import default_reports_dir as reports

    return reports()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    s = report["summary"]
    cfg = report["config"]
    ok_rate = offered_enough(s) and s["not_terminal"] == 0
    ok_p99 = s["ttt_p99_ms"] is not None and s["ttt_p99_ms"] < TARGET_TTT_P99_MS
    ok_check = not report["check"]["violations"]
    table = Table(title=f"mercato bench orders: {cfg['rate']:g} orders/s offered for "
                        f"{cfg['duration_s']:g} s, {cfg['decline_share']:.0%} declined cards")
    for col in ("measure", "value", "target", ""):
        table.add_column(col, justify="right" if col == "value" else "left")

    def mark(ok: bool) -> str:
        return "[green]✔[/]" if ok else "[red]✘[/]"

    table.add_row("offered (achieved send rate)", f"{_fmt(s['offered_per_s'], '.1f')} /s",
                  f"≥ {TARGET_ORDERS_PER_S:g} /s, all terminal", mark(ok_rate))
    table.add_row("completed orders", f"{_fmt(s['completed_per_s'], '.1f')} /s", "", "")
    table.add_row("acceptance latency p50 / p99",
                  f"{_fmt(s['accept_p50_ms'], '.0f')} / {_fmt(s['accept_p99_ms'], '.0f')} ms",
                  "", "")
    table.add_row("time to terminal p50 / p99",
                  f"{_fmt(s['ttt_p50_ms'], '.0f')} / {_fmt(s['ttt_p99_ms'], '.0f')} ms",
                  f"p99 < {TARGET_TTT_P99_MS:g} ms", mark(ok_p99))
    table.add_row("  terminal event seen p50 / p99",
                  f"{_fmt(s['seen_p50_ms'], '.0f')} / {_fmt(s['seen_p99_ms'], '.0f')} ms", "", "")
    table.add_row("sent / accepted / terminal",
                  f"{s['sent']} / {s['accepted']} / {s['completed']}", "", "")
    table.add_row("outcomes", ", ".join(f"{k} {v}" for k, v in s["outcomes"].items())
                  or "-", "", "" if not s["unexpected_outcomes"] else
                  f"[yellow]{s['unexpected_outcomes']} unexpected[/]")
    others = {k: v for k, v in s["http_statuses"].items() if k != "202"}
    if others:
        table.add_row("[yellow]not accepted[/]", ", ".join(f"{k}: {v}" for k, v in
                                                           others.items()), "", "")
    chk = report["check"]
    table.add_row("mercato check", "clean" if ok_check else
                  f"{len(chk['violations'])} violation(s), {len(chk['new_violations'])} new "
                  f"in this run", "clean", mark(ok_check))
    console.print(table)
    if report.get("steps"):
        steps = Table(title="saga steps: out = command staged -> reply staged by the service; "
                            "back = reply staged -> handled by orders")
        for col in ("step", "replies", "out p50 / p99 ms", "back p50 / p99 ms", "resends"):
            steps.add_column(col, justify="left" if col == "step" else "right")
        for name, st in report["steps"].items():
            steps.add_row(name, str(st["replies"]),
                          f"{_fmt(st['out_p50_ms'], '.0f')} / {_fmt(st['out_p99_ms'], '.0f')}",
                          f"{_fmt(st['back_p50_ms'], '.0f')} / "
                          f"{_fmt(st['back_p99_ms'], '.0f')}", str(st["resends"]))
        console.print(steps)
    cpu = Table(title="CPU per completed order (over the run, incl. idle work)")
    cpu.add_column("process")
    cpu.add_column("CPU ms/order", justify="right")
    cpu.add_column("share", justify="right")
    cpu.add_column("above idle\nms/order", justify="right")
    cpu.add_column("idle cores", justify="right")
    work = report.get("work_per_order") or {}
    # A service's transactions are its database's: the PostgreSQL row is where they cost.
    by_service = transactions_by_service(work)
    if by_service:
        cpu.add_column("transactions\n/order", justify="right")
    # The bench's own client is shown but left out of the platform's total.
    total = platform_cpu_ms(report["cpu_s_per_order"]) / 1000 or 1.0
    marginal = report.get("cpu_s_per_order_above_idle") or {}
    for who, sec in report["cpu_s_per_order"].items():
        cpu.add_row(who if who != CLIENT else f"[dim]{who} (not counted)[/]",
                    f"{sec * 1000:.2f}", "" if who == CLIENT else f"{sec / total:.0%}",
                    _fmt(None if who not in marginal else marginal[who] * 1000, ".2f"),
                    _fmt(report["idle_cpu_cores"].get(who), ".3f"),
                    *([_fmt(by_service.get(who), ".1f")] if by_service else []))
    cpu.add_row("[bold]platform total[/]", f"[bold]{total * 1000:.2f}[/]", "",
                f"[bold]{platform_cpu_ms(marginal):.2f}[/]", "",
                *([f"[bold]{work.get('transactions', 0):.1f}[/]"] if by_service else []))
    console.print(cpu)
    totals = {k: v for k, v in work.items() if not k.startswith(TRANSACTIONS_IN)}
    if totals:
        console.print("work per completed order (over the run): " + ", ".join(
            f"{k} {v:.1f}" for k, v in totals.items()))
    cores = report.get("cores") or {}
    if cores:
        console.print("cores busy during the run: " + ", ".join(
            f"{k} {v:.2f}" for k, v in cores.items()) + f" (of {os.cpu_count()})")
    for v in chk["new_violations"][:10]:
        console.print(f"[red]violation:[/] {v['invariant']}: {v['subject']}: {v['detail']}")
    console.print(f"report: {report['report_file']}")

