"""``mercato bench orders --target legacy|both``: the same order mix through the monolith.

The legacy shop (``mercato up --with legacy``) is reached on its own port. Set-up through
its own API, as its back office would: an admin (``python -m legacy create-admin``) adds a
category and ``products`` products with enough stock; ``customers`` customers register,
log in and add an address. Then, open model as in the services' bench: order i at
``start + i / rate``, ``POST /shop/checkout`` buying one unit of product i mod P for
customer i mod C, with the declining card for the same share of orders (``is_decline``).

The monolith answers with the outcome: 201 (the order is paid, stock taken, shipment made,
one transaction) or 402 (declined, nothing written). So its time to terminal is the time to
that answer, measured with the same clock and summarised by the same code as the services'
(``measure.summarise``). CPU per order counts what serves it: the shop's process,
PostgreSQL (all backends; the services' idle work in it is included and reported as idle
cores), the payment provider simulator and this client.

With ``--target both`` the services run first, then the monolith, on the same machine in
the same run, and a last table puts the figures side by side with their ratio.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mercato.bench.load import OrderRecord, is_decline, send_offsets
from mercato.bench.measure import MACHINE, cores_used, cpu_per_order, sample_cpu, summarise
from mercato.bench.shop import BenchError, fetch_json

APPROVE, DECLINE = "4242424242424242", "4000000000000002"
# The monolith's answers that end an order: paid (201) or declined (402).
OUTCOMES = {201: "APPROVED", 402: "REJECTED"}
SERVES_LEGACY = ("legacy", "postgres", "payments-provider")


@dataclass(frozen=True)
class LegacyTarget:
    url: str  # http://127.0.0.1:PORT (no /shop)
    groups: dict[str, list[int]]  # the processes that serve its orders


@dataclass
class Buyer:
    auth: dict[str, str]
    address_id: int


def read_legacy(home: Path) -> LegacyTarget:
    try:
        state = json.loads((home / "run" / "state.json").read_text())
    except (FileNotFoundError, ValueError) as exc:
        raise BenchError(f"no running platform in {home}: mercato up --detach --with "
                         "legacy") from exc
    url = (state.get("urls") or {}).get("legacy")
    procs = state.get("processes") or {}
    legacy = procs.get("legacy") or {}
    if state.get("phase") != "ready" or not url or not legacy:
        raise BenchError("the legacy shop is not running: start the platform with "
                         "mercato up --detach --with legacy")
    if not legacy.get("pid") or legacy.get("state") != "ready":
        why = (legacy.get("last_restart") or {}).get("detail") or legacy.get("state")
        raise BenchError(f"the legacy shop is not serving ({why}): see "
                         f"{legacy.get('log') or 'its log'}, and `mercato status`")
    groups = {name: [int(procs[name]["pid"])] for name in SERVES_LEGACY
              if (procs.get(name) or {}).get("pid")}
    return LegacyTarget(url=url.removesuffix("/shop"), groups=groups)


def create_legacy_admin(home: Path, email: str, password: str) -> None:
    from mercato.runtime.paths import Home
    from mercato.runtime.postgres import Postgres
    from mercato.runtime.services import repo_root

    h = Home(home)
    url = Postgres(h, h.ports().postgres).service_database_url("legacy")
    if url is None:
        raise BenchError("the legacy database does not exist: mercato up --with legacy")
    res = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "legacy", "create-admin", email], input=password + "\n",
        text=True, env={**os.environ, "LEGACY_DATABASE_URL": url}, cwd=str(repo_root()),
        capture_output=True, timeout=120, check=False)
    if res.returncode != 0:
        raise BenchError(f"creating the legacy admin failed: {res.stderr.strip()[-500:]}")


async def _login(session: Any, base: str, email: str, password: str) -> dict[str, str]:
    doc = await fetch_json(session, "POST", f"{base}/shop/login",
                           json={"email": email, "password": password})
    return {"Authorization": f"Bearer {doc['token']}"}


async def prepare_legacy(session: Any, home: Path, base: str, *, customers: int, products: int,
                         orders: int, say: Callable[[str], None]) -> tuple[list[Buyer], list[int]]:
    tag = uuid.uuid4().hex[:10]
    say("legacy: creating an admin, products with stock, customers …")
    email, password = f"bench-admin-{tag}@example.com", uuid.uuid4().hex
    await asyncio.to_thread(create_legacy_admin, home, email, password)
    admin = await _login(session, base, email, password)
    category = await fetch_json(session, "POST", f"{base}/shop/admin/categories", expect=(201,),
                                headers=admin, json={"name": f"bench {tag}"})
    product_ids = []
    for i in range(products):
        made = await fetch_json(session, "POST", f"{base}/shop/admin/products", expect=(201,),
                                headers=admin, json={"sku": f"BENCH-{tag}-{i}",
                                                     "name": f"Bench product {i}",
                                                     "category_id": category["id"],
                                                     "price": f"{10000 + 500 * i}"})
        await fetch_json(session, "PUT", f"{base}/shop/admin/stock/{made['id']}", headers=admin,
                         json={"on_hand": orders // products + 10})
        product_ids.append(int(made["id"]))

    async def buyer(i: int) -> Buyer:
        who = f"bench-{tag}-{i}@example.com"
        await fetch_json(session, "POST", f"{base}/shop/register", expect=(201,),
                         json={"email": who, "password": password, "name": f"Bench {i}"})
        auth = await _login(session, base, who, password)
        address = await fetch_json(session, "POST", f"{base}/shop/addresses", expect=(201,),
                                   headers=auth, json={"recipient": f"Bench {i}",
                                                       "line1": "1 Bench-ro", "city": "Seoul",
                                                       "postal_code": "04100"})
        return Buyer(auth=auth, address_id=int(address["id"]))

    buyers = await asyncio.gather(*(buyer(i) for i in range(customers)))
    return list(buyers), product_ids


async def place_legacy_orders(session: Any, base: str, buyers: list[Buyer],
                              products: list[int], *, rate: float, duration_s: float,
                              decline_share: float, first_index: int) -> list[OrderRecord]:
    """Open model: each checkout at its instant, whatever the answers before it."""
    records: list[OrderRecord] = []
    inflight: set[asyncio.Task[None]] = set()

    async def send(record: OrderRecord, buyer: Buyer, product: int) -> None:
        key = str(uuid.uuid4())
        try:
            async with session.post(
                    f"{base}/shop/checkout", headers={**buyer.auth, "Idempotency-Key": key},
                    json={"address_id": buyer.address_id,
                          "card_number": DECLINE if record.declined_card else APPROVE,
                          "items": [{"product_id": product, "quantity": 1}]}) as resp:
                body = await resp.read()
                record.accepted_at = time.time()
                record.http_status = resp.status
                record_outcome(record, resp.status, body, key)
        except Exception as exc:  # counted and reported, the run goes on
            record.error = f"{type(exc).__name__}: {exc}"[:200]

    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    for n, offset in enumerate(send_offsets(rate, duration_s)):
        delay = start + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        i = first_index + n
        record = OrderRecord(index=i, declined_card=is_decline(i, decline_share),
                             sent_at=time.time())
        records.append(record)
        task = asyncio.create_task(send(record, buyers[i % len(buyers)],
                                        products[i % len(products)]))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
    if inflight:
        await asyncio.wait(inflight, timeout=60)
    return records


def record_outcome(record: OrderRecord, status: int, body: bytes, key: str) -> None:
    """The monolith's answer is the order's end: paid or declined, at the answer's instant.
    A declined checkout leaves no order, so it is known by its idempotency key."""
    outcome = OUTCOMES.get(status)
    if outcome is None:
        record.error = body[:200].decode(errors="replace")
        return
    record.order_id = str(json.loads(body)["id"]) if status == 201 else f"declined:{key}"
    record.terminal, record.terminal_at, record.via = outcome, record.accepted_at, "answer"


async def run_legacy(home: Path, *, rate: float, duration_s: float, decline_share: float,
                     customers: int, products: int, warmup_s: float,
                     say: Callable[[str], None]) -> dict[str, Any]:
    import aiohttp

    target = read_legacy(home)
    async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=60),
            connector=aiohttp.TCPConnector(limit=0),
            headers={"User-Agent": "mercato-bench-legacy"}) as session:
        buyers, product_ids = await prepare_legacy(
            session, home, target.url, customers=customers, products=products,
            orders=round(rate * (duration_s + warmup_s)), say=say)
        warm: list[OrderRecord] = []
        if warmup_s > 0:
            say(f"legacy warm-up: {warmup_s:g} s at {rate:g} orders/s (not counted) …")
            warm = await place_legacy_orders(session, target.url, buyers, product_ids,
                                             rate=rate, duration_s=warmup_s,
                                             decline_share=decline_share, first_index=0)
        say(f"legacy measuring: {duration_s:g} s at {rate:g} orders/s …")
        cpu0, t0 = sample_cpu(target.groups), time.monotonic()
        records = await place_legacy_orders(session, target.url, buyers, product_ids,
                                            rate=rate, duration_s=duration_s,
                                            decline_share=decline_share,
                                            first_index=len(warm))
        cpu1, wall = sample_cpu(target.groups), time.monotonic() - t0
    summary = summarise(records, accepted_statuses=tuple(OUTCOMES))
    return {"summary": summary,
            "cpu_s_per_order": cpu_per_order(cpu0, cpu1, summary["completed"]),
            "cpu_window_s": wall, "cores": cores_used(cpu0, cpu1, wall),
            "machine_cpu_s": round(cpu1[MACHINE] - cpu0[MACHINE], 3),
            "warmup_orders": len(warm), "records": [asdict(r) for r in records]}


# -- side by side -------------------------------------------------------------------------------

COMPARED = (("completed orders/s", "completed_per_s", 1.0),
            ("time to terminal p50 ms", "ttt_p50_ms", 1.0),
            ("time to terminal p99 ms", "ttt_p99_ms", 1.0))


def compare(services: dict[str, Any] | None, legacy: dict[str, Any] | None
            ) -> list[tuple[str, float | None, float | None, float | None]]:
    """Rows (measure, services, legacy, services ÷ legacy) from the two reports; a side not
    run, or a figure missing, gives None (and no ratio)."""

    def figure(report: dict[str, Any] | None, key: str) -> float | None:
        if report is None:
            return None
        if key == "cpu_ms_per_order":
            per = report.get("cpu_s_per_order") or {}
            return round(sum(per.values()) * 1000, 3) if per else None
        value = report["summary"].get(key)
        return None if value is None else float(value)

    rows = []
    for label, key in [(label, key) for label, key, _ in COMPARED] + [
            ("CPU ms per order", "cpu_ms_per_order")]:
        s, lg = figure(services, key), figure(legacy, key)
        ratio = round(s / lg, 3) if s is not None and lg else None
        rows.append((label, s, lg, ratio))
    return rows


def print_comparison(services: dict[str, Any] | None, legacy: dict[str, Any] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="orders: services vs the legacy monolith (same machine, same mix)")
    for col in ("measure", "services", "legacy", "services ÷ legacy"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    for label, s, lg, ratio in compare(services, legacy):
        table.add_row(label, "-" if s is None else f"{s:.1f}", "-" if lg is None else f"{lg:.1f}",
                      "-" if ratio is None else f"{ratio:.2f}x")
    Console(highlight=False).print(table)


def print_legacy(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    s = report["summary"]
    table = Table(title="legacy monolith: POST /shop/checkout (one transaction per order)")
    table.add_column("measure")
    table.add_column("value", justify="right")

    def f(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    table.add_row("offered (achieved send rate)", f"{f(s['offered_per_s'], '.1f')} /s")
    table.add_row("completed orders", f"{f(s['completed_per_s'], '.1f')} /s")
    table.add_row("time to terminal p50 / p99",
                  f"{f(s['ttt_p50_ms'], '.0f')} / {f(s['ttt_p99_ms'], '.0f')} ms")
    table.add_row("sent / answered / terminal", f"{s['sent']} / {s['accepted']} / "
                                                f"{s['completed']}")
    table.add_row("outcomes", ", ".join(f"{k} {v}" for k, v in s["outcomes"].items()) or "-")
    others = {k: v for k, v in s["http_statuses"].items() if k not in ("201", "402")}
    if others:
        table.add_row("[yellow]not answered with an outcome[/]",
                      ", ".join(f"{k}: {v}" for k, v in others.items()))
    for who, sec in (report.get("cpu_s_per_order") or {}).items():
        table.add_row(f"CPU ms/order: {who}", f"{sec * 1000:.2f}")
    Console(highlight=False).print(table)
