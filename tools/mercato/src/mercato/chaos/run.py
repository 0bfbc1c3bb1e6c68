"""``mercato chaos``: fault scenarios against a running platform under a bounded order load.

The shop is set up once through the edge (``mercato.bench.shop``: an admin, stocked
products, customers with payment methods). Then, per scenario:

1. wait until the platform is ready (every process, the edge answering);
2. send orders at a constant rate (open model, ``mercato.bench.load``) and, after
   ``LEAD_S``, inject the fault; scenarios that need it probe catalog reads, sign-in and
   order placement every second while the fault lasts;
3. measure recovery: from the fault's start until a *canary* order, placed again and again
   until accepted, is terminal (the shop takes and finishes orders again);
4. keep the load ``TAIL_S`` longer, stop it, wait for every accepted order to be terminal
   (an order not terminal after ``DRAIN_S`` is stuck; one not found is lost);
5. run the full ``mercato check`` (retried while compensations settle).

Every wait is bounded, so a run always ends by itself. The verdict rules are in
``mercato.chaos.verdict``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform as py_platform
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mercato.bench.load import (
    TERMINAL_SUBJECTS,
    OrderRecord,
    apply_events,
    place_orders,
    subscribe_terminal,
    wait_terminal,
)
from mercato.bench.measure import new_violations, run_check
from mercato.bench.shop import (
    CUSTOMER_PASSWORD,
    BenchError,
    Customer,
    Shop,
    edge_session,
    prepare_shop,
    read_platform,
    refresh_tokens,
)
from mercato.chaos import faults
from mercato.chaos.scenarios import Context, Scenario
from mercato.chaos.verdict import count, failures, report_lines, status_key
from mercato.runtime import control
from mercato.runtime.paths import Home

LEAD_S = 3.0  # load before the fault
TAIL_S = 3.0  # load after recovery
READY_BOUND_S = 120.0  # the platform ready before a scenario
RECOVER_BOUND_S = 120.0  # from the fault's end to the canary order terminal
# Every accepted order terminal: waited for while orders keep ending (a loaded machine
# drains a backlog slowly, that is not "stuck"), until none ended for DRAIN_STALL_S or
# DRAIN_CAP_S passed.
DRAIN_STALL_S = 60.0
DRAIN_CAP_S = 300.0
CHECK_SETTLE_S = 30.0
MAX_LOAD_S = 600.0
TOKEN_REFRESH_S = 300.0  # sign in again past this age (tokens last 900 s)
DECLINE_SHARE = 0.2


@dataclass
class Run:
    home: Home
    edge: str
    nats_url: str
    session: Any
    shop: Shop
    canary: Customer
    prober: Customer
    say: Callable[[str], None]
    rate: float
    next_index: int = 0
    # Violations already reported (before the run, or by an earlier scenario): a scenario
    # is judged on the ones it brought.
    known: set[tuple[str, str]] = field(default_factory=set)
    extra: list[OrderRecord] = field(default_factory=list)  # canary and probe orders


async def _platform_ready(run: Run, bound_s: float) -> bool:
    """Every process ready and the edge answering a catalog read."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        state = control.read_state(run.home) or {}
        procs = state.get("processes") or {}
        if state.get("phase") == "ready" and procs and all(
                p.get("state") == "ready" for p in procs.values()):
            with contextlib.suppress(Exception):
                async with run.session.get(f"{run.edge}/api/catalog/products",
                                           params={"page_size": "1"}) as resp:
                    await resp.read()
                    if resp.status == 200:
                        return True
        await asyncio.sleep(0.25)
    return False


async def _place_one(run: Run, customer: Customer) -> OrderRecord:
    record = OrderRecord(index=-1, declined_card=False, sent_at=time.time())
    product = run.shop.products[0]
    try:
        async with customer.session.post(
                f"{run.edge}/api/orders",
                headers={**customer.auth, "Idempotency-Key": str(uuid.uuid4())},
                json={"items": [{"product_id": product["id"], "quantity": 1}],
                      "shipping_address_id": customer.address_id,
                      "payment": {"payment_method_id": customer.approve_method}}) as resp:
            body = await resp.read()
            record.http_status, record.accepted_at = resp.status, time.time()
            if resp.status == 202:
                record.order_id = str(json.loads(body)["id"])
            else:
                record.error = body[:200].decode(errors="replace")
    except Exception as exc:  # the answer a client gets while the edge is down
        record.error = f"{type(exc).__name__}: {exc}"[:200]
    run.extra.append(record)
    return record


async def _order_status(run: Run, order_id: str, auth: dict[str, str]) -> str | None:
    """The order's status, "404" when it does not exist, None when no answer."""
    with contextlib.suppress(Exception):
        async with run.session.get(f"{run.edge}/api/orders/{order_id}", headers=auth) as resp:
            if resp.status == 404:
                return "404"
            if resp.status == 200:
                return str((await resp.json())["status"])
    return None


async def _recover(run: Run, started: float, bound_s: float) -> tuple[float | None,
                                                                     list[str]]:
    """Seconds from ``started`` until a canary order placed now is terminal; the canary's
    answers on the way."""
    statuses: list[str] = []
    deadline = time.monotonic() + bound_s
    await asyncio.sleep(0.3)  # let the supervisor see what the fault did
    if not await _platform_ready(run, bound_s):
        return None, statuses
    while time.monotonic() < deadline:
        rec = await _place_one(run, run.canary)
        statuses.append(status_key(rec.http_status, rec.error))
        if rec.order_id is None:
            await asyncio.sleep(0.5)
            continue
        while time.monotonic() < deadline:
            apply_events([rec], run.shop)
            if rec.terminal is None:
                status = await _order_status(run, rec.order_id, run.canary.auth)
                if status in ("APPROVED", "REJECTED", "CANCELLED"):
                    rec.terminal, rec.via = status, "lookup"
            if rec.terminal is not None:
                return time.time() - started, statuses
            await asyncio.sleep(0.25)
    return None, statuses


async def _probe(run: Run, done: asyncio.Event) -> dict[str, dict[str, int]]:
    """Every second until ``done``: a catalog read, a sign-in and an order placement."""
    seen: dict[str, list[str]] = {"catalog read": [], "sign-in": [], "order placement": []}
    p = run.prober
    while not done.is_set():
        t0 = time.monotonic()
        try:
            async with p.session.get(f"{run.edge}/api/catalog/products",
                                     params={"page_size": "1"}) as resp:
                await resp.read()
                seen["catalog read"].append(str(resp.status))
        except Exception as exc:
            seen["catalog read"].append(status_key(None, f"{type(exc).__name__}:"))
        try:
            async with p.session.post(f"{run.edge}/api/identity/token", data={
                    "grant_type": "password", "username": p.email,
                    "password": CUSTOMER_PASSWORD}) as resp:
                body = await resp.read()
                seen["sign-in"].append(str(resp.status))
                if resp.status == 200:
                    p.auth["Authorization"] = f"Bearer {json.loads(body)['access_token']}"
                    p.token_at = time.monotonic()
        except Exception as exc:
            seen["sign-in"].append(status_key(None, f"{type(exc).__name__}:"))
        rec = await _place_one(run, p)
        seen["order placement"].append(status_key(rec.http_status, rec.error))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), max(0.0, 1.0 - (time.monotonic() - t0)))
    return {k: count(v) for k, v in seen.items()}


async def _settle(run: Run, records: list[OrderRecord]) -> tuple[int, int]:
    """Wait for every accepted order to be terminal; (stuck, lost) after the drain."""
    start = last_progress = time.monotonic()
    done = -1
    while True:
        apply_events(records, run.shop)
        now_done = sum(1 for r in records if r.terminal)
        if not any(r.order_id and r.terminal is None for r in records):
            break
        now = time.monotonic()
        if now_done > done:
            done, last_progress = now_done, now
        if now - last_progress > DRAIN_STALL_S or now - start > DRAIN_CAP_S:
            break
        await asyncio.sleep(0.5)
    await wait_terminal(run.session, run.edge, run.shop, records, 0.0)  # looks the rest up
    stuck = lost = 0
    for r in records:
        if r.order_id and r.terminal is None:
            status = await _order_status(run, r.order_id, run.shop.admin)
            if status == "404":
                lost += 1
            elif status in ("APPROVED", "REJECTED", "CANCELLED"):
                r.terminal, r.via = status, "lookup"
            else:
                stuck += 1
    return stuck, lost


async def run_scenario(run: Run, sc: Scenario) -> dict[str, Any]:
    t_start = time.monotonic()
    result: dict[str, Any] = {"name": sc.name, "what": sc.what}
    state = control.read_state(run.home) or {}
    why_not = sc.missing(state)
    if why_not:
        run.say(f"[yellow]skip[/] {sc.name}: {why_not}")
        return {**result, "skipped": why_not}
    run.say(f"[bold]{sc.name}[/]: {sc.what}")
    if not await _platform_ready(run, READY_BOUND_S):
        return {**result, "fault_error": f"the platform was not ready within "
                                         f"{READY_BOUND_S:g} s before the scenario"}
    await refresh_tokens(run.session, run.edge, run.shop, older_than_s=TOKEN_REFRESH_S)
    await refresh_tokens(run.session, run.edge, Shop(admin={}, customers=[
        run.canary, run.prober], products=[]), older_than_s=TOKEN_REFRESH_S)
    run.extra = []
    stop = asyncio.Event()
    load = asyncio.create_task(place_orders(
        run.session, run.edge, run.shop, rate=run.rate, duration_s=MAX_LOAD_S,
        decline_share=DECLINE_SHARE, first_index=run.next_index, stop=stop))
    probes: dict[str, dict[str, int]] | None = None
    try:
        await asyncio.sleep(LEAD_S)
        fault_started = time.time()
        # Probes run from the fault's start until the shop has recovered: for a kill, the
        # outage is the restart that follows, not the instant of the signal.
        recovered_event = asyncio.Event()
        probing = asyncio.create_task(_probe(run, recovered_event)) if sc.probes else None
        try:
            try:
                result["fault"] = await sc.inject(Context(home=run.home,
                                                          nats_url=run.nats_url, state=state))
            except faults.FaultError as exc:
                result["fault_error"] = str(exc)
            except Exception as exc:  # reported as this scenario's failure; the run goes on
                result["fault_error"] = f"{type(exc).__name__}: {exc}"
            finally:
                faults.clear_faults(run.home)
            result["fault_s"] = round(time.time() - fault_started, 1)
            run.say(f"  fault over after {result['fault_s']:.1f} s; waiting for recovery …")
            recovered, canary = await _recover(run, fault_started, RECOVER_BOUND_S)
        finally:
            recovered_event.set()
            if probing is not None:
                probes = await probing
        result["recovered_s"] = None if recovered is None else round(recovered, 1)
        result["canary"] = {"statuses": count(canary)}
        await asyncio.sleep(TAIL_S)
    finally:
        stop.set()
        records = await load
    run.next_index += len(records)
    run.say(f"  {len(records)} orders sent; waiting for every accepted one to end …")
    tracked = records + run.extra
    stuck, lost = await _settle(run, tracked)
    accepted = [r for r in records if r.http_status == 202 and r.order_id]
    result["orders"] = {
        "sent": len(records), "accepted": len(accepted),
        "terminal": sum(1 for r in accepted if r.terminal), "stuck": stuck, "lost": lost,
        "outcomes": count([r.terminal for r in accepted if r.terminal]),
        "extra_orders": len([r for r in run.extra if r.order_id])}
    result["client_errors"] = count([status_key(r.http_status, r.error) for r in records
                                     if r.http_status != 202])
    if probes is not None:
        result["probes"] = probes
    run.say("  mercato check …")
    before = [{"invariant": i, "subject": s} for i, s in run.known]
    violations, attempts = await run_check(run.home.root, settle_s=CHECK_SETTLE_S,
                                           before=before)
    new = new_violations(violations, run.known)
    run.known |= {(v["invariant"], v["subject"]) for v in violations}
    result["check"] = {"violations": violations, "new": new, "attempts": attempts}
    result["took_s"] = round(time.monotonic() - t_start, 1)
    why = failures(result)
    run.say(f"  {'[red]FAIL[/]' if why else '[green]pass[/]'} {sc.name} in "
            f"{result['took_s']:.0f} s" + "".join(f"\n  [red]✘[/] {w}" for w in why))
    return result


async def _chaos(home: Home, scenarios: list[Scenario], *, rate: float, customers: int,
                 say: Callable[[str], None]) -> list[dict[str, Any]]:
    import nats

    from mercato.runtime.broker import connect_options

    target = read_platform(home.root)
    async with edge_session(target.edge_url, "mercato-chaos", timeout_s=30) as session:
        # Stock for every order the run may send (the bound of each scenario's load).
        expected = round(rate * 90 * len(scenarios)) + 100
        shop = await prepare_shop(session, home.root, target.edge_url,
                                  customers=customers + 2, products=4, orders=expected,
                                  say=say)
        prober, canary = shop.customers.pop(), shop.customers.pop()
        try:
            # Forever: the broker is one of the things this run kills.
            nc = await nats.connect(target.nats_url, connect_timeout=3,
                                    max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                    error_cb=_quiet, **connect_options(home))
        except Exception as exc:
            await shop.close()
            await canary.session.close()
            await prober.session.close()
            raise BenchError(f"NATS at {target.nats_url} does not answer ({exc})") from exc
        run = Run(home=home, edge=target.edge_url, nats_url=target.nats_url, session=session,
                  shop=shop, canary=canary, prober=prober, say=say, rate=rate)
        results = []
        say("mercato check before the run …")
        found, _ = await run_check(home.root)
        run.known = {(v["invariant"], v["subject"]) for v in found}
        if found:
            say(f"[yellow]note:[/] {len(found)} violation(s) before the run; each scenario "
                "is judged on the ones it adds (the run still fails)")
        results.append({"name": "before the run", "what": "mercato check on the platform "
                        "as found", "check": {"violations": found, "new": found},
                        "baseline": True})
        try:
            handler = subscribe_terminal(shop)
            for subject in TERMINAL_SUBJECTS:
                await nc.subscribe(subject, cb=handler, pending_msgs_limit=1_000_000)
            for i, sc in enumerate(scenarios, 1):
                say(f"[dim]scenario {i}/{len(scenarios)}[/]")
                results.append(await run_scenario(run, sc))
        finally:
            faults.clear_faults(home)
            with contextlib.suppress(Exception):
                await nc.close()
            await shop.close()
            await canary.session.close()
            await prober.session.close()
    return results


async def _quiet(_exc: Exception) -> None:
    """The broker going away is this command's doing: no traceback on the console."""


def default_reports_dir() -> Path:
    from mercato.bench.report import default_reports_dir as reports

    return reports()


def run_chaos(home: Home, scenarios: list[Scenario], *, rate: float = 5.0,
              customers: int = 8, report_file: Path | None = None) -> int:
    """Run the scenarios, print and save the report. 0: every scenario passed (or was
    skipped); 1: one failed; 2: the run could not start."""
    from rich.console import Console

    console = Console(stderr=True, highlight=False)

    def say(line: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {line}")

    t0 = time.monotonic()
    try:
        results = asyncio.run(_chaos(home, scenarios, rate=rate, customers=customers,
                                     say=say))
    except BenchError as exc:
        console.print(f"[red]chaos:[/red] {exc}")
        return 2
    out = report_file or default_reports_dir() / "chaos.json"
    report = {"command": "chaos", "at": datetime.now(UTC).isoformat(timespec="seconds"),
              "config": {"rate": rate, "customers": customers,
                         "scenarios": [s.name for s in scenarios]},
              "took_s": round(time.monotonic() - t0, 1),
              "machine": f"{os.cpu_count()} cores, load average "
                         f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}, "
                         f"{py_platform.platform()} (shared with other work: figures are "
                         "noisy)",
              "scenarios": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    text = "\n".join(report_lines(report))
    out.with_suffix(".txt").write_text(text + "\n")
    print_table(report)
    print(text)
    print(f"report: {out} (text: {out.with_suffix('.txt')})")
    return 1 if any(failures(r) for r in results) else 0


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"mercato chaos: {report['config']['rate']:g} orders/s")
    for col in ("scenario", "sent / accepted / terminal", "stuck / lost", "errors seen",
                "recovered", "check", ""):
        table.add_column(col)
    for r in report["scenarios"]:
        if r.get("skipped"):
            table.add_row(r["name"], "", "", "", "", "", f"[dim]skipped: {r['skipped']}[/]")
            continue
        if r.get("baseline"):
            found = (r.get("check") or {}).get("violations") or []
            table.add_row(r["name"], "", "", "", "", "clean" if not found else
                          f"{len(found)} violation(s)", "[red]✘[/]" if found else "")
            continue
        o = r.get("orders") or {}
        errors = ", ".join(f"{k}: {v}" for k, v in (r.get("client_errors") or {}).items())
        check = r.get("check") or {}
        violations = check.get("new", check.get("violations")) or []
        rec = r.get("recovered_s")
        table.add_row(r["name"], f"{o.get('sent', 0)} / {o.get('accepted', 0)} / "
                      f"{o.get('terminal', 0)}", f"{o.get('stuck', 0)} / {o.get('lost', 0)}",
                      errors or "-", "-" if rec is None else f"{rec:.1f} s",
                      "clean" if not violations else f"{len(violations)} new violation(s)",
                      "[red]✘[/]" if failures(r) else "[green]✔[/]")
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)
    console.print(table)
