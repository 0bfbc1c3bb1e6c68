"""``mercato soak``: hold order load on a running platform for a bounded time, per window.

It sets the shop up like ``mercato bench orders`` (``mercato.bench.shop``) and sends orders
at a constant rate (open model, ``mercato.bench.load``): by default half the saturation it
measures first (``PROBE_S`` seconds offered at ``PROBE_RATE``; completed orders per second
is the saturation when the platform could not keep up). At the end of every window (a
minute by default) it samples:

- the memory of every process of the platform (RSS of the process and its own children;
  for PostgreSQL, whose backends map the same shared buffers, the unique set size of its
  tree: memory private to its processes, so a buffer cache warming up is not growth);
- the age of the oldest unpublished outbox row across the services;
- consumer lag: messages pending or awaiting ack on every JetStream consumer;
- dead letters waiting.

After the load, every accepted order must end terminal; time to terminal p50/p99 is given
per window of sending. ``mercato check`` runs last. The rules (``failures``): the last
window's p99 more than 50 % above the first's; a process (same pid) grown more than 10 %
from the end of the first window (the warm-up) to the last; an outbox row older than 5 s
in any window; a stuck order; a violation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform as py_platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mercato.bench.load import (
    TERMINAL_SUBJECTS,
    OrderRecord,
    place_orders,
    subscribe_terminal,
    wait_terminal,
)
from mercato.bench.measure import run_check, summarise
from mercato.bench.shop import (
    BenchError,
    edge_session,
    prepare_shop,
    read_platform,
    refresh_tokens,
)
from mercato.runtime import control
from mercato.runtime.paths import Home

P99_DRIFT = 0.5
MEMORY_GROWTH = 0.10
OUTBOX_BOUND_S = 5.0
PROBE_RATE = 40.0
PROBE_S = 10.0
DRAIN_S = 120.0
TOKEN_REFRESH_S = 300.0
DECLINE_SHARE = 0.2


# -- the rules (pure) ---------------------------------------------------------------------


def failures(windows: list[dict[str, Any]], *, stuck: int = 0,
             violations: list[dict[str, str]] | None = None) -> list[str]:
    """Why the soak failed (empty: it passed), from the per-window figures."""
    why: list[str] = []
    if stuck:
        why.append(f"{stuck} order(s) not terminal after the drain")
    for v in violations or []:
        why.append(f"mercato check: {v['invariant']}: {v['subject']}")
    if not windows:
        return [*why, "no window was measured"]
    first, last = windows[0], windows[-1]
    p1, pn = first.get("ttt_p99_ms"), last.get("ttt_p99_ms")
    if len(windows) > 1 and p1 and pn is not None and pn > p1 * (1 + P99_DRIFT):
        why.append(f"time to terminal p99 drifted from {p1:.0f} ms (window 1) to {pn:.0f} ms "
                   f"(window {len(windows)}): more than {P99_DRIFT:.0%} up")
    if len(windows) > 1:
        for name, base in (first.get("memory") or {}).items():
            end = (last.get("memory") or {}).get(name)
            if end is None or end["pid"] != base["pid"] or not base["mb"]:
                continue  # restarted (or gone): its growth says nothing
            if end["mb"] > base["mb"] * (1 + MEMORY_GROWTH):
                why.append(f"{name} grew from {base['mb']:.1f} MB to {end['mb']:.1f} MB after "
                           f"the warm-up: more than {MEMORY_GROWTH:.0%}")
    for w in windows:
        oldest = w.get("outbox_oldest_s")
        if oldest is not None and oldest > OUTBOX_BOUND_S:
            why.append(f"window {w['window']}: an outbox row waited {oldest:.1f} s "
                       f"(bound {OUTBOX_BOUND_S:g} s)")
    return why


def window_figures(records: list[OrderRecord], start: float, window_s: float,
                   count: int) -> list[dict[str, Any]]:
    """Time to terminal p50/p99 and counts per window of sending (pure)."""
    out = []
    for i in range(count):
        lo, hi = start + i * window_s, start + (i + 1) * window_s
        mine = [r for r in records if lo <= r.sent_at < hi]
        s = summarise(mine) if mine else {}
        out.append({"sent": len(mine), "accepted": s.get("accepted", 0),
                    "terminal": s.get("completed", 0), "ttt_p50_ms": s.get("ttt_p50_ms"),
                    "ttt_p99_ms": s.get("ttt_p99_ms")})
    return out


# -- sampling the platform ----------------------------------------------------------------


def _memory(pid: int, others: set[int], private: bool) -> float:
    """MB of a process and its live descendants, except the processes in ``others`` and
    theirs (the supervisor is every process's parent: they count apart). RSS, or USS (the
    memory private to each process) when ``private``."""
    import psutil

    total = 0
    try:
        stack = [psutil.Process(pid)]
    except psutil.Error:
        return 0.0
    while stack:
        p = stack.pop()
        with contextlib.suppress(psutil.Error):
            total += p.memory_full_info().uss if private else p.memory_info().rss
            stack.extend(c for c in p.children() if c.pid not in others)
    return total / 1e6


def sample_memory(home: Home) -> dict[str, dict[str, Any]]:
    """Per process of the platform: its pid and MB. PostgreSQL counts the private memory
    of its tree: every backend maps the shared buffers, which fill up as data is touched
    (a cache warming, not growth) and would count once per backend in RSS."""
    state = control.read_state(home) or {}
    pids = {name: p["pid"] for name, p in (state.get("processes") or {}).items()
            if p.get("pid")}
    if state.get("supervisor_pid"):
        pids["supervisor"] = state["supervisor_pid"]
    known = set(pids.values())
    return {name: {"pid": pid, "mb": round(_memory(pid, known - {pid}, name == "postgres"), 1)}
            for name, pid in sorted(pids.items())}


async def sample_outbox(home: Home) -> float | None:
    """Age in seconds of the oldest unpublished outbox row of any service (0: none)."""
    from mercato.check import _outbox
    from mercato.runtime.postgres import Postgres
    from mercato.runtime.services import SERVICES

    pg = Postgres(home, home.ports().postgres)
    urls = {s: pg.service_database_url(s) for s in SERVICES}
    rows = await asyncio.gather(*(_outbox(urls, s) for s in SERVICES), return_exceptions=True)
    ages = [r["oldest_s"] for r in rows if isinstance(r, dict)]
    return round(max(ages), 2) if ages else None


async def sample_broker(nc: Any) -> dict[str, Any]:
    from chassis.messaging.streams import DEAD_LETTER_STREAM

    js = nc.jetstream()
    lag: dict[str, int] = {}
    dead = 0
    for stream in await js.streams_info():
        name = stream.config.name
        if name == DEAD_LETTER_STREAM:
            dead = stream.state.messages
            continue
        if name.startswith("KV_"):
            continue
        for c in await js.consumers_info(name):
            lag[c.name] = int(c.num_pending or 0) + int(c.num_ack_pending or 0)
    worst = max(lag.items(), key=lambda kv: kv[1], default=("-", 0))
    return {"consumer_lag": sum(lag.values()), "worst_consumer": worst[0],
            "worst_lag": worst[1], "dead_letters": dead}


# -- the run ------------------------------------------------------------------------------


async def _quiet(exc: Exception) -> None:
    """Broker errors show in the lag and the windows' figures, not as tracebacks."""


async def measure_saturation(session: Any, edge: str, shop: Any,
                             say: Callable[[str], None]) -> tuple[float, dict[str, Any]]:
    say(f"measuring saturation: {PROBE_S:g} s offered at {PROBE_RATE:g} orders/s …")
    records = await place_orders(session, edge, shop, rate=PROBE_RATE, duration_s=PROBE_S,
                                 decline_share=DECLINE_SHARE, first_index=0)
    await wait_terminal(session, edge, shop, records, DRAIN_S)
    s = summarise(records)
    completed = s["completed_per_s"] or 0.0
    saturated = completed < 0.9 * PROBE_RATE
    say(f"  completed {completed:.1f} orders/s"
        + ("" if saturated else " (not saturated: the platform kept up with the probe)"))
    return completed, {"offered_per_s": PROBE_RATE, "seconds": PROBE_S,
                       "completed_per_s": completed, "saturated": saturated}


async def _soak(home: Home, *, minutes: float, rate: float | None, window_s: float,
                customers: int, say: Callable[[str], None]) -> dict[str, Any]:
    import nats

    from mercato.runtime.broker import connect_options

    target = read_platform(home.root)
    windows_n = max(1, round(minutes * 60 / window_s))
    async with edge_session(target.edge_url, "mercato-soak", timeout_s=60) as session:
        expected = round((rate or PROBE_RATE) * windows_n * window_s
                         + PROBE_RATE * PROBE_S) + 100
        shop = await prepare_shop(session, home.root, target.edge_url, customers=customers,
                                  products=8, orders=expected, say=say)
        try:
            nc = await nats.connect(target.nats_url, connect_timeout=3,
                                    max_reconnect_attempts=-1, error_cb=_quiet,
                                    **connect_options(home))
        except Exception as exc:
            await shop.close()
            raise BenchError(f"NATS at {target.nats_url} does not answer ({exc})") from exc
        try:
            handler = subscribe_terminal(shop)
            for subject in TERMINAL_SUBJECTS:
                await nc.subscribe(subject, cb=handler, pending_msgs_limit=1_000_000)
            saturation = None
            if rate is None:
                completed, saturation = await measure_saturation(
                    session, target.edge_url, shop, say)
                rate = max(0.5, round(completed / 2, 1))
                await asyncio.sleep(5.0)  # let the probe's backlog clear
            say(f"soak: {windows_n} window(s) of {window_s:g} s at {rate:g} orders/s …")
            stop = asyncio.Event()
            start = time.time()
            t0 = time.monotonic()
            load = asyncio.create_task(place_orders(
                session, target.edge_url, shop, rate=rate, duration_s=windows_n * window_s,
                decline_share=DECLINE_SHARE, first_index=10_000_000, stop=stop))
            samples: list[dict[str, Any]] = []
            try:
                for w in range(windows_n):
                    await asyncio.sleep(max(0.0, t0 + (w + 1) * window_s - time.monotonic()))
                    sample: dict[str, Any] = {"window": w + 1,
                                              "memory": await asyncio.to_thread(
                                                  sample_memory, home)}
                    try:
                        sample["outbox_oldest_s"] = await sample_outbox(home)
                        sample.update(await sample_broker(nc))
                    except Exception as exc:  # reported; the soak goes on
                        sample["sample_error"] = f"{type(exc).__name__}: {exc}"
                    samples.append(sample)
                    say(f"  window {w + 1}/{windows_n}: outbox oldest "
                        f"{sample.get('outbox_oldest_s')} s, consumer lag "
                        f"{sample.get('consumer_lag')}, dead letters "
                        f"{sample.get('dead_letters')}")
                    await refresh_tokens(session, target.edge_url, shop,
                                         older_than_s=TOKEN_REFRESH_S)
            finally:
                stop.set()
                records = await load
            say("waiting for every order to be terminal …")
            await wait_terminal(session, target.edge_url, shop, records, DRAIN_S)
        finally:
            with contextlib.suppress(Exception):
                await nc.close()
            await shop.close()
    figures = window_figures(records, start, window_s, windows_n)
    windows = [{**f, **s} for f, s in zip(figures, samples, strict=False)]
    summary = summarise(records)
    say("running mercato check …")
    violations, _ = await run_check(home.root, settle_s=30.0)
    return {"rate": rate, "saturation": saturation, "windows": windows,
            "summary": {k: summary[k] for k in ("sent", "accepted", "completed",
                                                "not_terminal", "http_statuses",
                                                "ttt_p50_ms", "ttt_p99_ms")},
            "check": {"violations": violations}}


def report_lines(report: dict[str, Any]) -> list[str]:
    s = report["summary"]
    lines = [f"mercato soak at {report['at']}: {len(report['windows'])} window(s) of "
             f"{report['config']['window_s']:g} s at {report['rate']:g} orders/s",
             f"machine: {report['machine']}"]
    sat = report.get("saturation")
    if sat:
        lines.append(f"saturation measured first: {sat['completed_per_s']:.1f} orders/s "
                     f"completed with {sat['offered_per_s']:g} offered")
    lines.append(f"orders sent / accepted / terminal: {s['sent']} / {s['accepted']} / "
                 f"{s['completed']}; answers: "
                 + ", ".join(f"{k}: {v}" for k, v in s["http_statuses"].items()))
    lines.append("")
    lines.append(f"{'window':>6} {'sent':>5} {'ttt p50':>8} {'ttt p99':>8} "
                 f"{'outbox':>7} {'lag':>5} {'dead':>5}  memory MB (process: MB)")
    for w in report["windows"]:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.0f}"
        mem = ", ".join(f"{n} {m['mb']:.0f}" for n, m in (w.get("memory") or {}).items())
        lines.append(f"{w['window']:>6} {w['sent']:>5} {ms(w['ttt_p50_ms']):>8} "
                     f"{ms(w['ttt_p99_ms']):>8} {w.get('outbox_oldest_s')!s:>7} "
                     f"{w.get('consumer_lag')!s:>5} {w.get('dead_letters')!s:>5}  {mem}")
    why = report["failures"]
    lines.append("")
    lines += [f"✘ {w}" for w in why]
    lines.append(f"verdict: {'FAIL' if why else 'pass'} (rules: p99 of the last window ≤ "
                 f"{1 + P99_DRIFT:g} times the first; memory growth after the first window ≤ "
                 f"{MEMORY_GROWTH:.0%}; oldest outbox row ≤ {OUTBOX_BOUND_S:g} s)")
    return lines


def run_soak(home: Home, *, minutes: float, rate: float | None, window_s: float = 60.0,
             customers: int = 20, report_file: Path | None = None) -> int:
    """0: passed; 1: a rule fired; 2: could not run."""
    from rich.console import Console

    console = Console(stderr=True, highlight=False)

    def say(line: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {line}")

    try:
        result = asyncio.run(_soak(home, minutes=minutes, rate=rate, window_s=window_s,
                                   customers=customers, say=say))
    except BenchError as exc:
        console.print(f"[red]soak:[/red] {exc}")
        return 2
    why = failures(result["windows"], stuck=result["summary"]["not_terminal"],
                   violations=result["check"]["violations"])
    from mercato.bench.report import default_reports_dir

    out = report_file or default_reports_dir() / "soak.json"
    report = {"command": "soak", "at": datetime.now(UTC).isoformat(timespec="seconds"),
              "config": {"minutes": minutes, "window_s": window_s, "customers": customers,
                         "rate_asked": rate},
              "machine": f"{os.cpu_count()} cores, load average "
                         f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}, "
                         f"{py_platform.platform()} (shared with other work: figures are "
                         "noisy)",
              **result, "failures": why}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    text = "\n".join(report_lines(report))
    out.with_suffix(".txt").write_text(text + "\n")
    print(text)
    print(f"report: {out} (text: {out.with_suffix('.txt')})")
    return 1 if why else 0
