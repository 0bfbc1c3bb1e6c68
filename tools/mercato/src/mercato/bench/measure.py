"""What the load commands measure: per-order figures (acceptance, time to terminal), CPU
per process group, the work per order (messages, transactions), saga step timings from
the saga journal, and ``mercato check`` retried while compensations settle."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from mercato.bench.load import OrderRecord

MACHINE = "machine (all processes)"


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of unsorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[idx]



def summarise(records: list[OrderRecord],
              accepted_statuses: tuple[int, ...] = (202,)) -> dict[str, Any]:
    """The figures of one measured run (pure: from the per-order records).
    ``accepted_statuses``: the answers that take an order in (the services' 202; the
    monolith's outcomes, 201 paid and 402 declined)."""
    accepted = [r for r in records if r.http_status in accepted_statuses and r.order_id]
    done = [r for r in accepted if r.terminal and r.terminal_at is not None]
    statuses: dict[str, int] = {}
    for r in records:
        key = str(r.http_status) if r.http_status is not None else f"error: {r.error}"
        statuses[key] = statuses.get(key, 0) + 1
    accept_ms = [(r.accepted_at - r.sent_at) * 1000 for r in accepted if r.accepted_at]
    ttt_ms = [(r.terminal_at - r.sent_at) * 1000 for r in done  # type: ignore[operator]
              if r.terminal_at is not None]
    seen_ms = [(r.seen_at - r.sent_at) * 1000 for r in done if r.seen_at is not None]
    first_send = min((r.sent_at for r in records), default=0.0)
    last_send = max((r.sent_at for r in records), default=0.0)
    last_terminal = max((r.terminal_at for r in done), default=None)  # type: ignore[type-var]
    span = (last_terminal - first_send) if last_terminal is not None else None
    outcome: dict[str, int] = {}
    for r in done:
        outcome[r.terminal or "?"] = outcome.get(r.terminal or "?", 0) + 1
    unexpected = sum(1 for r in done if (r.terminal == "APPROVED") == r.declined_card)
    return {
        "sent": len(records),
        "offered_per_s": (len(records) - 1) / (last_send - first_send)
        if last_send > first_send else None,
        "accepted": len(accepted),
        "http_statuses": dict(sorted(statuses.items())),
        "completed": len(done),
        "not_terminal": len(accepted) - len(done),
        "outcomes": dict(sorted(outcome.items())),
        "unexpected_outcomes": unexpected,
        "completed_per_s": len(done) / span if span else None,
        "accept_p50_ms": percentile(accept_ms, 0.50),
        "accept_p99_ms": percentile(accept_ms, 0.99),
        "accept_max_ms": max(accept_ms, default=None),
        "ttt_p50_ms": percentile(ttt_ms, 0.50),
        "ttt_p99_ms": percentile(ttt_ms, 0.99),
        "ttt_max_ms": max(ttt_ms, default=None),
        "seen_p50_ms": percentile(seen_ms, 0.50),
        "seen_p99_ms": percentile(seen_ms, 0.99),
        "found_by_lookup": sum(1 for r in done if r.via == "lookup"),
        "span_s": span,
    }


def cpu_per_order(before: dict[str, float], after: dict[str, float],
                  orders: int) -> dict[str, float]:
    """CPU seconds per completed order of each process group, largest first."""
    if orders <= 0:
        return {}
    used = {who: after[who] - before[who] for who in after if who in before and who != MACHINE}
    return dict(sorted(((who, max(0.0, cpu) / orders) for who, cpu in used.items()),
                       key=lambda kv: -kv[1]))


# -- work per order: what the platform did, whoever did it -----------------------------------

TRANSACTIONS_IN = "transactions in "  # + a service: that database's commits and rollbacks


async def sample_work(home: Path, nc: Any) -> dict[str, int]:
    """Counters that only grow: messages stored in the platform's streams (their last
    sequence numbers; work-queue streams delete what was acked), deliveries to its
    consumers (redeliveries included), and PostgreSQL transactions and rows written in the
    services' databases (``pg_stat_database``)."""
    import asyncpg

    from mercato.runtime.paths import Home
    from mercato.runtime.postgres import Postgres
    from mercato.runtime.services import SERVICES

    work = {"messages published": 0, "messages delivered": 0, "transactions": 0,
            "rows written": 0}
    js = nc.jetstream()
    for stream in await js.streams_info():
        if stream.config.name.startswith("KV_"):  # the service registry, not shop work
            continue
        work["messages published"] += stream.state.last_seq
        for consumer in await js.consumers_info(stream.config.name):
            work["messages delivered"] += consumer.delivered.consumer_seq
    h = Home(home)
    conn = await asyncpg.connect(Postgres(h, h.ports().postgres).superuser_dsn, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT datname, (xact_commit + xact_rollback)::bigint AS xacts, "
            "(tup_inserted + tup_updated + tup_deleted)::bigint AS rows "
            "FROM pg_stat_database WHERE datname = ANY($1::text[])", SERVICES)
    finally:
        await conn.close()
    work["transactions"] = sum(int(r["xacts"] or 0) for r in rows)
    work["rows written"] = sum(int(r["rows"] or 0) for r in rows)
    for r in rows:  # each service has a database of its own, named after it
        work[TRANSACTIONS_IN + r["datname"]] = int(r["xacts"] or 0)
    return work


def transactions_by_service(work: dict[str, float]) -> dict[str, float]:
    """The per-service part of ``sample_work``'s counts (or of their per-order figures)."""
    return {k.removeprefix(TRANSACTIONS_IN): v for k, v in work.items()
            if k.startswith(TRANSACTIONS_IN)}


async def sample_work_or_none(home: Path, nc: Any,
                               say: Callable[[str], None]) -> dict[str, int] | None:
    try:
        return await sample_work(home, nc)
    except Exception as exc:  # a bonus, like the step breakdown: the run goes on without it
        say(f"[yellow]note:[/] no work-per-order counts ({type(exc).__name__}: {exc})")
        return None


def work_per_order(before: dict[str, int], after: dict[str, int],
                   orders: int) -> dict[str, float]:
    if orders <= 0:
        return {}
    return {k: round((after[k] - before[k]) / orders, 2) for k in after if k in before}


def cpu_above_idle(per_order: dict[str, float], idle_cores: dict[str, float],
                   window_s: float, orders: int) -> dict[str, float]:
    """Per-order CPU less what each process burns idle (timers, polls, heartbeats) over the
    same window: the marginal cost of an order."""
    if orders <= 0:
        return {}
    return {who: max(0.0, sec - idle_cores.get(who, 0.0) * window_s / orders)
            for who, sec in per_order.items()}


def cores_used(before: dict[str, float], after: dict[str, float],
               wall_s: float) -> dict[str, float]:
    """Cores busy over the window: the whole machine, the platform, this client, and the
    rest (other programs on the machine: the noise in every figure)."""
    if wall_s <= 0 or MACHINE not in before or MACHINE not in after:
        return {}
    used = {who: max(0.0, after[who] - before[who]) for who in after if who in before}
    client = used.pop("bench client", 0.0)
    machine = used.pop(MACHINE)
    mine = sum(used.values())
    return {"machine": machine / wall_s, "platform": mine / wall_s,
            "bench client": client / wall_s,
            "outside the platform": max(0.0, machine - mine - client) / wall_s}


def uuid7_time(message_id: str | None) -> float | None:
    """The instant (epoch seconds) in a UUIDv7 message id: when its envelope was made, i.e.
    when the sending service staged it in its outbox, inside its transaction."""
    if not message_id:
        return None
    try:
        u = uuid.UUID(message_id)
    except ValueError:
        return None
    return int(u.hex[:12], 16) / 1000 if u.version == 7 else None


def step_breakdown(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Where an order's time goes, step by step, from the saga's own journal.

    ``rows`` are ``saga_events`` rows (saga_id, kind, step, at, message_id, accepted) in
    journal order. For each step: *out* = the command staged in orders' outbox -> the
    reply staged by the service that did the work (orders' relay, NATS, that service's
    inbox consumer and handler); *back* = the reply staged -> orders handled it (that
    service's relay, NATS, orders' inbox consumer and the saga transition). Message ids are
    UUIDv7, so both instants come from the messages themselves.
    """
    # A step whose receiver forwards the next step's command (ADR 0053) is answered by that
    # next step: its row is named "<step> → <next>", out covering both services.
    sent: dict[str, tuple[str, float]] = {}  # per saga: the step of its command, staged at
    out: dict[str, list[float]] = {}
    back: dict[str, list[float]] = {}
    resends: dict[str, int] = {}
    for r in rows:
        saga, step = str(r["saga_id"]), str(r.get("step"))
        at = r["at"].timestamp() if isinstance(r["at"], datetime) else float(r["at"])
        if r["kind"] == "command_sent":
            staged = uuid7_time(r.get("message_id"))
            if staged is not None:
                sent[saga] = (step, staged)
        elif r["kind"] == "resent":
            resends[step] = resends.get(step, 0) + 1
        elif r["kind"] == "reply" and str(r.get("accepted")).lower() == "true":
            staged = uuid7_time(r.get("message_id"))
            if staged is None or saga not in sent:
                continue
            asked, asked_at = sent.pop(saga)
            label = step if asked == step else f"{asked} → {step}"
            out.setdefault(label, []).append((staged - asked_at) * 1000)
            back.setdefault(label, []).append((at - staged) * 1000)
    steps: dict[str, Any] = {}
    for step in out:
        steps[step] = {"replies": len(out[step]),
                       "out_p50_ms": percentile(out[step], 0.5),
                       "out_p99_ms": percentile(out[step], 0.99),
                       "back_p50_ms": percentile(back[step], 0.5),
                       "back_p99_ms": percentile(back[step], 0.99),
                       "resends": resends.get(step, 0)}
    return steps


def _tree_cpu(pid: int, others: set[int]) -> float:
    """CPU seconds of a process, the children it has reaped (a PostgreSQL backend that
    exited mid-run still counts) and its live descendants, except those listed in
    ``others`` and theirs (the supervisor is every process's parent: they count apart)."""
    import psutil

    try:
        root = psutil.Process(pid)
        t = root.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        stack = root.children()
        while stack:
            child = stack.pop()
            if child.pid in others:
                continue
            with contextlib.suppress(psutil.Error):
                c = child.cpu_times()
                total += c.user + c.system
                stack.extend(child.children())
    except psutil.Error:
        return 0.0
    return float(total)


def sample_cpu(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each process group, of this client, and of the whole machine
    (busy time over every core), so the load from outside the platform can be told apart."""
    import psutil

    known = {pid for pids in groups.values() for pid in pids}
    sample = {who: sum(_tree_cpu(pid, known - {pid}) for pid in pids)
              for who, pids in groups.items()}
    ru = resource.getrusage(resource.RUSAGE_SELF)
    sample["bench client"] = ru.ru_utime + ru.ru_stime
    m = psutil.cpu_times()
    sample[MACHINE] = m.user + m.nice + m.system + getattr(m, "irq", 0.0) + getattr(
        m, "softirq", 0.0)
    return sample


async def saga_journal(home: Path, order_ids: list[str]) -> list[dict[str, Any]]:
    """The measured orders' saga journal, read once after the run with orders' own role."""
    import asyncpg
    from chassis.messaging.relay import asyncpg_dsn

    from mercato.runtime.paths import Home
    from mercato.runtime.postgres import Postgres

    h = Home(home)
    url = Postgres(h, h.ports().postgres).service_database_url("orders")
    if url is None or not order_ids:
        return []
    conn = await asyncpg.connect(asyncpg_dsn(url), timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT saga_id::text AS saga_id, kind, step, at, detail->>'message_id' AS "
            "message_id, detail->>'accepted' AS accepted FROM saga_events "
            "WHERE saga_id = ANY($1::uuid[]) ORDER BY saga_id, id", order_ids)
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def run_check(home: Path, settle_s: float = 0.0,
                    before: list[dict[str, str]] | None = None,
                    ) -> tuple[list[dict[str, str]], int]:
    """``mercato check``; while it finds something not in ``before``, again every second
    for up to ``settle_s`` (compensations of the last rejected orders may still be on
    their way)."""
    from mercato.check import check
    from mercato.runtime.paths import Home

    known = {(v["invariant"], v["subject"]) for v in before or []}
    deadline = time.monotonic() + settle_s
    attempts = 0
    while True:
        attempts += 1
        found = [asdict(v) for v in await check(Home(home))]
        if not new_violations(found, known) or time.monotonic() > deadline:
            return found, attempts
        await asyncio.sleep(1.0)


def new_violations(found: list[dict[str, str]],
                   known: set[tuple[str, str]]) -> list[dict[str, str]]:
    return [v for v in found if (v["invariant"], v["subject"]) not in known]

