"""``mercato bench orders``: orders through the edge at a constant arrival rate, end to end.

Like ``mercato bench gateway`` it measures a running platform (``mercato up --detach``). It
sets itself up through the edge as a shop would be used: a throw-away admin (``mercato admin
create-admin``) stocks a few products (``PUT /api/inventory/stock/{sku}``), and a few
customers register, log in, add an address and exchange two cards for payment methods (as a
storefront does once per card). Then it places orders, ``POST /api/orders`` with an
Idempotency-Key and a ``payment_method_id``, each customer in turn and each product in turn,
a share of them with the declining card (4000000000000002, the rest 4242424242424242).

Open model. Sends are scheduled at fixed instants (order i at ``start + i / rate``) whatever
the answers: a slow platform shows up as latency and a growing backlog, never as a lower
offered load. The client (aiohttp, unlimited connection pool, uvloop) costs ~0.1 ms CPU per
order, noise next to the ~8 saga messages each order causes.

What is measured, per order:
- acceptance latency: send until the 202 answer;
- time to terminal: send until the order became APPROVED or REJECTED. The bench subscribes
  (plain NATS, no JetStream consumer: nothing is acked or stored for it) to the orders
  service's ``orders.events.order_approved`` / ``order_rejected`` subjects; every terminal
  transition stages one of these in the same transaction as the status change, and its
  envelope carries ``Mercato-Occurred-At``, stamped inside that transaction. So the
  terminal instant is read from the platform's own record, not from polling (which would
  both load the system and round up to the poll interval); same machine, same clock. The
  instant the event reached the bench is kept too (``seen``: + the outbox relay's lag), an
  upper bound on when a subscriber could know. An order whose event was not seen within
  the drain time is looked up once with ``GET /api/orders/{id}`` (as the admin);
- completed orders/s: terminal orders / (last terminal instant - first send);
- per saga step, from the orders service's saga journal read once after the run: command
  staged -> reply staged by the service (*out*) and reply staged -> handled by orders
  (*back*); message ids are UUIDv7, so both instants come from the messages themselves;
- CPU seconds per order of every process of the platform (each service's instances summed,
  PostgreSQL with all its backends, NATS, Envoy, the simulators, the supervisor and this
  client), sampled with psutil at the first send and once the last order is terminal.

A short warm-up at the same rate runs first (connection pools, caches, first imports) and is
left out of every figure. At the end ``mercato check`` is run (retried for a few seconds so
compensations still in flight settle); a violation fails the bench. The table is printed
and the JSON report saved as ``bench/reports/orders.json``.

The parts live apart so ``mercato chaos`` and ``mercato soak`` reuse them: ``shop`` (setup
through the edge), ``load`` (the open-model sender and the terminal-event listener),
``measure`` (figures, CPU, work, saga steps, the check) and ``report`` (the tables).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mercato.bench.baseline import platform_checkout
from mercato.bench.load import (
    TERMINAL_SUBJECTS,
    OrderRecord,
    apply_events,
    place_orders,
    subscribe_terminal,
    wait_terminal,
)
from mercato.bench.measure import (
    MACHINE,
    cores_used,
    cpu_above_idle,
    cpu_per_order,
    new_violations,
    run_check,
    saga_journal,
    sample_cpu,
    sample_work_or_none,
    step_breakdown,
    summarise,
    work_per_order,
)
from mercato.bench.report import (
    TARGET_ORDERS_PER_S,
    TARGET_TTT_P99_MS,
    default_reports_dir,
    meets_target,
    print_report,
)
from mercato.bench.shop import BenchError, edge_session, prepare_shop, read_platform


async def _run(home: Path, *, rate: float, duration_s: float, decline_share: float,
               customers: int, products: int, warmup_s: float, drain_s: float,
               say: Callable[[str], None]) -> dict[str, Any]:
    import nats

    from mercato.runtime.broker import connect_options
    from mercato.runtime.paths import Home

    target = read_platform(home)
    say("mercato check before the run …")
    before, _ = await run_check(home)
    if before:
        say(f"[yellow]note:[/] mercato check already finds {len(before)} violation(s) before "
            "the run (kept apart below); a fresh platform gives a clean verdict")
    async with edge_session(target.edge_url, "mercato-bench", timeout_s=60) as session:
        total = round(rate * (duration_s + warmup_s))
        shop = await prepare_shop(session, home, target.edge_url, customers=customers,
                                  products=products, orders=total, say=say)
        try:
            nc = await nats.connect(target.nats_url, connect_timeout=3,
                                    **connect_options(Home(home)))
        except Exception as exc:  # counted and reported, the run goes on
            await shop.close()
            raise BenchError(f"NATS at {target.nats_url} does not answer ({exc}): see "
                             "mercato status") from exc
        try:
            handler = subscribe_terminal(shop)
            for subject in TERMINAL_SUBJECTS:
                await nc.subscribe(subject, cb=handler, pending_msgs_limit=1_000_000)
            await nc.flush()
            warm: list[OrderRecord] = []
            if warmup_s > 0:
                say(f"warm-up: {warmup_s:g} s at {rate:g} orders/s (not counted) …")
                warm = await place_orders(session, target.edge_url, shop, rate=rate,
                                          duration_s=warmup_s, decline_share=decline_share,
                                          first_index=0)
                await wait_terminal(session, target.edge_url, shop, warm, drain_s)
            idle0, idle_t0 = sample_cpu(target.groups), time.monotonic()
            await asyncio.sleep(2.0)
            idle1, idle_s = sample_cpu(target.groups), time.monotonic() - idle_t0
            idle = {k: round((idle1[k] - idle0[k]) / idle_s, 4) for k in idle1 if k in idle0}
            if idle.get(MACHINE, 0.0) > 1.0:
                say(f"[yellow]note:[/] the machine is busy before the run "
                    f"({idle[MACHINE]:.1f} of {os.cpu_count()} cores): figures will be noisy")

            def progress(recs: list[OrderRecord]) -> None:
                apply_events(recs, shop)
                answered = sum(1 for r in recs if r.http_status is not None or r.error)
                done = sum(1 for r in recs if r.terminal)
                say(f"  {recs[-1].sent_at - recs[0].sent_at:4.0f} s: sent {len(recs)}, "
                    f"answered {answered}, terminal {done}")

            say(f"measuring: {duration_s:g} s at {rate:g} orders/s, "
                f"{decline_share:.0%} declined cards, {len(shop.customers)} customers, "
                f"{len(shop.products)} products …")
            load_before = os.getloadavg()
            work0 = await sample_work_or_none(home, nc, say)
            cpu0, cpu_t0 = sample_cpu(target.groups), time.monotonic()
            records = await place_orders(session, target.edge_url, shop, rate=rate,
                                         duration_s=duration_s, decline_share=decline_share,
                                         first_index=len(warm), progress=progress)
            say("waiting for every order to be terminal …")
            await wait_terminal(session, target.edge_url, shop, records, drain_s)
            cpu1, cpu_wall = sample_cpu(target.groups), time.monotonic() - cpu_t0
            work1 = await sample_work_or_none(home, nc, say) if work0 is not None else None
            load_after = os.getloadavg()
        finally:
            await nc.close()
            await shop.close()
    summary = summarise(records)
    try:
        steps = step_breakdown(await saga_journal(
            home, [r.order_id for r in records if r.order_id]))
    except Exception as exc:  # a breakdown is a bonus: report the run without it
        say(f"[yellow]note:[/] no per-step breakdown ({type(exc).__name__}: {exc})")
        steps = {}
    say("running mercato check …")
    violations, attempts = await run_check(home, settle_s=15.0, before=before)
    known = {(v["invariant"], v["subject"]) for v in before}
    return {
        "summary": summary,
        "steps": steps,
        "cpu_s_per_order": (per_order := cpu_per_order(cpu0, cpu1, summary["completed"])),
        "cpu_s_per_order_above_idle": cpu_above_idle(per_order, idle, cpu_wall,
                                                     summary["completed"]),
        "cpu_s_total": {k: round(cpu1[k] - cpu0[k], 3) for k in cpu1 if k in cpu0},
        "work_per_order": (work_per_order(work0, work1, summary["completed"])
                           if work0 is not None and work1 is not None else {}),
        "cpu_window_s": cpu_wall,
        "cores": cores_used(cpu0, cpu1, cpu_wall),
        "idle_cpu_cores": idle,
        "check": {"violations": violations, "attempts": attempts,
                  "new_violations": new_violations(violations, known),
                  "before_run": len(before)},
        "loadavg": {"before": [round(x, 2) for x in load_before],
                    "after": [round(x, 2) for x in load_after]},
        "warmup_orders": len(warm),
        "platform_checkout": str(platform_checkout(target.groups) or ""),
        "records": [asdict(r) for r in records],
    }



TARGETS = ("services", "legacy", "both")


def run_orders_bench(home: Path, *, rate: float = 60.0, duration_s: float = 30.0,
                     decline_share: float = 0.2, customers: int = 20, products: int = 8,
                     warmup_s: float = 3.0, drain_s: float = 60.0,
                     report_file: Path | None = None, target: str = "services",
                     save_baseline: Path | None = None,
                     compare_with: list[Path] | None = None) -> int:
    """Run it, print the tables, save the report. 0: met the target with a clean check;
    1: check found violations or orders never became terminal; 2: could not run; 3: ran
    clean but missed the throughput / latency target. ``target``: ``services`` (through
    the edge), ``legacy`` (the monolith of ``mercato up --with legacy``) or ``both``, one
    after the other, with a last table side by side (mercato.bench.legacy)."""
    from rich.console import Console

    from mercato.bench.baseline import current_commit, machine
    from mercato.bench.legacy import print_comparison, print_legacy, read_legacy, run_legacy

    console = Console(stderr=True, highlight=False)

    def say(line: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {line}")

    if target not in TARGETS:
        console.print(f"[red]bench orders:[/red] --target must be one of {', '.join(TARGETS)}")
        return 2
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with the chassis
        runner = asyncio.run
    options = {"rate": rate, "duration_s": duration_s, "decline_share": decline_share,
               "customers": customers, "products": products, "warmup_s": warmup_s}
    result: dict[str, Any] | None = None
    legacy: dict[str, Any] | None = None
    from mercato.bench.baseline import BaselineError, baseline_of, compare, load_run

    try:
        earlier = [load_run(p) for p in compare_with or []]
    except BaselineError as exc:
        console.print(f"[red]bench orders:[/red] --compare {exc}")
        return 2
    if (compare_with or save_baseline) and target != "services":
        console.print("[red]bench orders:[/red] --compare and --save-baseline measure the "
                      "services: use them with --target services")
        return 2
    try:
        if target != "services":
            read_legacy(Path(home))  # refuse at once, not after the services' run
        if target != "legacy":
            result = runner(_run(Path(home), drain_s=drain_s, say=say, **options))
        if target != "services":
            legacy = runner(run_legacy(Path(home), say=say, **options))
    except BenchError as exc:
        console.print(f"[red]bench orders:[/red] {exc}")
        return 2
    now = datetime.now(UTC)
    out = report_file or default_reports_dir() / (
        "orders.json" if target == "services" else f"orders-{target}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "benchmark": "orders", "target": target, "at": now.isoformat(),
        "config": options,
        "targets": {"completed_per_s": TARGET_ORDERS_PER_S, "ttt_p99_ms": TARGET_TTT_P99_MS},
        "machine": machine(),
        "report_file": str(out),
        **current_commit(Path(result["platform_checkout"])
                         if result and result.get("platform_checkout") else None),
    }
    if result is not None:
        report.update({"meets_target": meets_target(result["summary"])
                       and not result["check"]["violations"],
                       **{k: v for k, v in result.items() if k != "records"}})
    if legacy is not None:
        report["legacy"] = {k: v for k, v in legacy.items() if k != "records"}
    if result is not None and legacy is not None:
        from mercato.bench.legacy import compare

        report["comparison"] = [{"measure": m, "services": s, "legacy": lg,
                                 "services_over_legacy": r}
                                for m, s, lg, r in compare(result, legacy)]
    if result is not None and (save_baseline or earlier):
        this_run = baseline_of(report, commit={"commit": report["commit"],
                                               "dirty": report["dirty"]}, at=now)
        if earlier:
            report["compared_with"] = compare(earlier, [this_run])
        if save_baseline:
            save_baseline.parent.mkdir(parents=True, exist_ok=True)
            save_baseline.write_text(json.dumps(this_run, indent=1) + "\n")
            report["baseline_file"] = str(save_baseline)
    out.write_text(json.dumps(report, indent=1) + "\n")
    if result is not None:
        print_report(report)
        if report.get("compared_with"):
            from mercato.bench.baseline import print_comparison as print_against

            print_against(report["compared_with"])
        if report.get("baseline_file"):
            Console(highlight=False).print(f"baseline saved: {report['baseline_file']}")
    if legacy is not None:
        print_legacy(report["legacy"])
        if result is not None:
            print_comparison(result, legacy)
        else:
            Console(highlight=False).print(f"report: {out}")
    code = 0
    if legacy is not None and (legacy["summary"]["completed"] < legacy["summary"]["sent"]):
        code = 1  # a checkout that ended in neither an order nor a decline
    if result is not None:
        if result["check"]["violations"] or result["summary"]["not_terminal"]:
            return 1
        if not meets_target(result["summary"]):
            return max(code, 3) if code == 0 else code
    return code


if __name__ == "__main__":  # pragma: no cover - convenience for running without the CLI
    raise SystemExit(run_orders_bench(Path(sys.argv[1]) if len(sys.argv) > 1
                                      else Path(".mercato")))
