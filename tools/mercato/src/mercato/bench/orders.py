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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

APPROVE_CARD = "4242424242424242"
DECLINE_CARD = "4000000000000002"
TERMINAL_SUBJECTS = {"orders.events.order_approved": "APPROVED",
                     "orders.events.order_rejected": "REJECTED"}
OCCURRED_AT = "Mercato-Occurred-At"
TARGET_ORDERS_PER_S = 50.0
TARGET_TTT_P99_MS = 1000.0
MACHINE = "machine (all processes)"
CUSTOMER_PASSWORD = "bench password 1"  # noqa: S105 - throw-away accounts of the bench


class BenchError(Exception):
    """Something the user can fix; the message says what to do next."""


# -- pure parts ---------------------------------------------------------------------------


def is_decline(i: int, share: float) -> bool:
    """Whether order ``i`` pays with the declining card: ``share`` of the orders, spread
    evenly (every 5th for 0.2), so any window of the run has the same mix."""
    if share <= 0:
        return False
    if share >= 1:
        return True
    return int((i + 1) * share) > int(i * share)


def send_offsets(rate: float, duration_s: float) -> list[float]:
    """Seconds after the start at which each order is sent: a constant arrival rate."""
    if rate <= 0 or duration_s <= 0:
        return []
    return [i / rate for i in range(max(1, round(rate * duration_s)))]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of unsorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[idx]


def parse_occurred_at(value: str | None) -> float | None:
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


@dataclass
class OrderRecord:
    index: int
    declined_card: bool
    sent_at: float  # wall clock (time.time()), comparable with the platform's timestamps
    accepted_at: float | None = None
    http_status: int | None = None
    error: str | None = None
    order_id: str | None = None
    terminal: str | None = None  # APPROVED | REJECTED | CANCELLED
    terminal_at: float | None = None  # Mercato-Occurred-At of the terminal event
    seen_at: float | None = None  # when that event reached the bench
    via: str | None = None  # "event" or "lookup"


def summarise(records: list[OrderRecord]) -> dict[str, Any]:
    """The figures of one measured run (pure: from the per-order records)."""
    accepted = [r for r in records if r.http_status == 202 and r.order_id]
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
        row = await conn.fetchrow(
            "SELECT sum(xact_commit + xact_rollback)::bigint AS xacts, "
            "sum(tup_inserted + tup_updated + tup_deleted)::bigint AS rows "
            "FROM pg_stat_database WHERE datname = ANY($1::text[])", SERVICES)
    finally:
        await conn.close()
    work["transactions"], work["rows written"] = int(row["xacts"] or 0), int(row["rows"] or 0)
    return work


async def _sample_work_or_none(home: Path, nc: Any,
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
    sent: dict[tuple[str, str], float] = {}
    out: dict[str, list[float]] = {}
    back: dict[str, list[float]] = {}
    resends: dict[str, int] = {}
    for r in rows:
        key = (str(r["saga_id"]), str(r.get("step")))
        at = r["at"].timestamp() if isinstance(r["at"], datetime) else float(r["at"])
        if r["kind"] == "command_sent":
            staged = uuid7_time(r.get("message_id"))
            if staged is not None:
                sent[key] = staged
        elif r["kind"] == "resent":
            resends[key[1]] = resends.get(key[1], 0) + 1
        elif r["kind"] == "reply" and str(r.get("accepted")).lower() == "true":
            staged = uuid7_time(r.get("message_id"))
            if staged is None or key not in sent:
                continue
            out.setdefault(key[1], []).append((staged - sent.pop(key)) * 1000)
            back.setdefault(key[1], []).append((at - staged) * 1000)
    steps: dict[str, Any] = {}
    for step in out:
        steps[step] = {"replies": len(out[step]),
                       "out_p50_ms": percentile(out[step], 0.5),
                       "out_p99_ms": percentile(out[step], 0.99),
                       "back_p50_ms": percentile(back[step], 0.5),
                       "back_p99_ms": percentile(back[step], 0.99),
                       "resends": resends.get(step, 0)}
    return steps


def meets_target(summary: dict[str, Any]) -> bool:
    rate, p99 = summary.get("completed_per_s"), summary.get("ttt_p99_ms")
    return (rate is not None and p99 is not None and rate >= TARGET_ORDERS_PER_S
            and p99 < TARGET_TTT_P99_MS and summary.get("not_terminal") == 0)


# -- the platform -------------------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    edge_url: str
    nats_url: str
    postgres_port: int
    groups: dict[str, list[int]]  # process group (service, engine, ...) -> pids


def read_platform(home: Path) -> Platform:
    """Where the edge and NATS listen and which pids belong to what, from ``run/state.json``."""
    path = home / "run" / "state.json"
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise BenchError(f"{path} not found: start the platform first "
                         f"(mercato up --detach)") from exc
    except ValueError as exc:
        raise BenchError(f"{path} is not valid JSON ({exc}): restart the platform "
                         "(mercato down, then mercato up --detach)") from exc
    if state.get("phase") != "ready":
        raise BenchError(f"the platform is {state.get('phase')!r}, not ready: see mercato "
                         "status")
    ports = state.get("ports") or {}
    if not isinstance(ports.get("edge"), int):
        raise BenchError("the platform runs without the edge (Envoy): start it with "
                         "mercato up --detach")
    groups: dict[str, list[int]] = {}
    for name, proc in (state.get("processes") or {}).items():
        if proc.get("pid"):
            groups.setdefault(proc.get("service") or name, []).append(int(proc["pid"]))
    if state.get("supervisor_pid"):
        groups["supervisor"] = [int(state["supervisor_pid"])]
    missing = {"orders", "inventory", "payments", "identity", "catalog"} - set(groups)
    if missing:
        raise BenchError(f"not running: {', '.join(sorted(missing))}; start every service "
                         "(mercato up --detach without --service)")
    return Platform(edge_url=f"http://127.0.0.1:{ports['edge']}",
                    nats_url=f"nats://127.0.0.1:{ports['nats']}",
                    postgres_port=int(ports["postgres"]), groups=groups)


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


# -- driving the shop through the edge ----------------------------------------------------


@dataclass
class Customer:
    auth: dict[str, str]
    address_id: str
    # The customer's own connections, from its own address (see customer_session).
    session: Any = None
    # Payment methods of the approving and the declining test card.
    approve_method: str = ""
    decline_method: str = ""


@dataclass
class Shop:
    admin: dict[str, str]
    customers: list[Customer]
    products: list[dict[str, Any]]
    events: dict[str, tuple[str, float | None, float]] = field(default_factory=dict)

    async def close(self) -> None:
        for customer in self.customers:
            if customer.session is not None:
                await customer.session.close()


def customer_session(i: int, like: Any) -> Any:
    """Customer ``i``'s client, connecting from its own loopback address (127.2.x.y; Linux
    routes all of 127.0.0.0/8 on lo). The edge limits order placing per client address, as
    real customers each have theirs; one address for the whole bench would be one customer
    placing every order."""
    import aiohttp

    address = f"127.2.{i // 250 % 250}.{i % 250 + 2}"
    return aiohttp.ClientSession(
        timeout=like.timeout, headers={"User-Agent": "mercato-bench"},
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, local_addr=(address, 0)))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _json(session: Any, method: str, url: str, *, expect: tuple[int, ...] = (200,),
                retry_429: bool = False, **kwargs: Any) -> Any:
    for attempt in range(30):
        async with session.request(method, url, **kwargs) as resp:
            body = await resp.read()
            if resp.status == 429 and retry_429 and attempt < 29:
                await asyncio.sleep(1.0)
                continue
            if resp.status not in expect:
                raise BenchError(f"{method} {url} answered {resp.status}: "
                                 f"{body[:300].decode(errors='replace')}")
            return json.loads(body) if body else None
    raise AssertionError("unreachable")


def create_admin(home: Path, email: str, password: str) -> None:
    """An admin account, made the way ``mercato admin create-admin`` makes one."""
    from mercato.runtime.paths import Home
    from mercato.runtime.postgres import Postgres
    from mercato.runtime.services import repo_root

    h = Home(home)
    ports = h.ports()
    url = Postgres(h, ports.postgres).service_database_url("identity")
    if url is None:
        raise BenchError("the identity database does not exist: run mercato up once")
    env = {**os.environ, "IDENTITY_DATABASE_URL": url,
           "IDENTITY_NATS_URL": f"nats://127.0.0.1:{ports.nats}",
           "IDENTITY_ENVIRONMENT": "development", "IDENTITY_INSTANCE_ID": "identity-bench"}
    res = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "identity", "create-admin", email, "--password-stdin"],
        input=password + "\n", text=True, env=env, cwd=str(repo_root()), capture_output=True,
        timeout=120, check=False)
    if res.returncode != 0:
        raise BenchError(f"creating the bench's admin failed: {res.stderr.strip()[-500:]}")


async def _login(session: Any, edge: str, email: str, password: str) -> str:
    # The token route is rate-limited at the edge (per client, under a total): wait on a 429.
    doc = await _json(session, "POST", f"{edge}/api/identity/token", retry_429=True,
                      data={"grant_type": "password", "username": email,
                            "password": password})
    return str(doc["access_token"])


async def prepare_shop(session: Any, home: Path, edge: str, *, customers: int, products: int,
                       orders: int, say: Callable[[str], None]) -> Shop:
    tag = uuid.uuid4().hex[:10]
    say("creating an admin, stocking products …")
    admin_email, admin_password = f"bench-admin-{tag}@example.com", uuid.uuid4().hex
    await asyncio.to_thread(create_admin, home, admin_email, admin_password)
    admin = _bearer(await _login(session, edge, admin_email, admin_password))
    page = await _json(session, "GET", f"{edge}/api/catalog/products",
                       params={"page_size": str(max(products, 1))})
    chosen = [p for p in page["items"] if p.get("status", "active") == "active"][:products]
    if not chosen:
        raise BenchError("the catalog has no active product: is the catalog seeded?")
    per_product = orders // len(chosen) + 10
    for product in chosen:
        url = f"{edge}/api/inventory/stock/{product['sku']}"
        deadline = time.monotonic() + 30
        while True:  # the stock row follows ProductCreated through the broker
            async with session.get(url) as resp:
                if resp.status == 200:
                    stock = await resp.json()
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"no stock row for {product['sku']} after 30 s: see "
                                 "mercato logs inventory")
            await asyncio.sleep(0.5)
        await _json(session, "PUT", url, headers=admin,
                    json={"on_hand": int(stock["on_hand"]) + per_product})
    say(f"registering {customers} customers (login, address, payment methods) …")
    shop = Shop(admin=admin, customers=[], products=chosen)

    async def one(i: int) -> Customer:
        email = f"bench-{tag}-{i}@example.com"
        own = customer_session(i, session)
        try:
            await _json(own, "POST", f"{edge}/api/identity/register", expect=(201,),
                        retry_429=True, json={"email": email, "password": CUSTOMER_PASSWORD,
                                              "name": f"Bench Customer {i}"})
            auth = _bearer(await _login(own, edge, email, CUSTOMER_PASSWORD))
            address = await _json(own, "POST", f"{edge}/api/identity/me/addresses",
                                  expect=(201,), headers=auth,
                                  json={"name": "Ada", "line1": "1 Main St", "city": "Seoul",
                                        "postal_code": "04524", "country": "KR"})
            methods = [await _json(own, "POST", f"{edge}/api/payments/payment-methods",
                                   expect=(201,), headers=auth, json={"card_number": card})
                       for card in (APPROVE_CARD, DECLINE_CARD)]
        except BaseException:
            await own.close()
            raise
        return Customer(auth=auth, address_id=str(address["id"]), session=own,
                        approve_method=str(methods[0]["id"]),
                        decline_method=str(methods[1]["id"]))

    # A few at a time: registration hashes the password (argon2id) on identity's one core.
    for start in range(0, customers, 4):
        shop.customers += await asyncio.gather(*(one(i) for i in
                                                 range(start, min(customers, start + 4))))
    return shop


def subscribe_terminal(shop: Shop) -> Callable[[Any], Any]:
    """A NATS message handler filing terminal events by order id."""

    async def on_message(msg: Any) -> None:
        seen = time.time()
        try:
            order_id = str(json.loads(msg.data)["order_id"])
        except (ValueError, KeyError, TypeError):
            return
        status = TERMINAL_SUBJECTS.get(msg.subject, "?")
        occurred = parse_occurred_at((msg.headers or {}).get(OCCURRED_AT))
        shop.events.setdefault(order_id, (status, occurred, seen))

    return on_message


async def place_orders(session: Any, edge: str, shop: Shop, *, rate: float, duration_s: float,
                       decline_share: float, first_index: int,
                       progress: Callable[[list[OrderRecord]], None] | None = None,
                       ) -> list[OrderRecord]:
    """Send at the scheduled instants, without waiting for answers (open model)."""
    records: list[OrderRecord] = []
    inflight: set[asyncio.Task[None]] = set()

    async def send(record: OrderRecord, customer: Customer, product: dict[str, Any]) -> None:
        method = customer.decline_method if record.declined_card else customer.approve_method
        try:
            async with (customer.session or session).post(
                    f"{edge}/api/orders",
                    headers={**customer.auth, "Idempotency-Key": str(uuid.uuid4())},
                    json={"items": [{"product_id": product["id"], "quantity": 1}],
                          "shipping_address_id": customer.address_id,
                          "payment": {"payment_method_id": method}}) as resp:
                body = await resp.read()
                record.accepted_at = time.time()
                record.http_status = resp.status
                if resp.status == 202:
                    record.order_id = str(json.loads(body)["id"])
                else:
                    record.error = body[:200].decode(errors="replace")
        except Exception as exc:  # counted and reported, the run goes on
            record.error = f"{type(exc).__name__}: {exc}"[:200]

    offsets = send_offsets(rate, duration_s)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    next_progress = start + 5.0
    for n, offset in enumerate(offsets):
        delay = start + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        i = first_index + n
        record = OrderRecord(index=i, declined_card=is_decline(i, decline_share),
                             sent_at=time.time())
        records.append(record)
        task = asyncio.create_task(send(record, shop.customers[i % len(shop.customers)],
                                        shop.products[i % len(shop.products)]))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
        if progress is not None and loop.time() >= next_progress:
            next_progress += 5.0
            progress(records)
    if inflight:
        await asyncio.wait(inflight, timeout=60)
    return records


def _apply_events(records: list[OrderRecord], shop: Shop) -> None:
    for r in records:
        if r.order_id and r.terminal is None and r.order_id in shop.events:
            r.terminal, r.terminal_at, r.seen_at = shop.events[r.order_id]
            r.via = "event"


async def wait_terminal(session: Any, edge: str, shop: Shop, records: list[OrderRecord],
                        timeout_s: float) -> None:
    """Until every accepted order's terminal event arrived; then look up the rest once."""
    deadline = time.monotonic() + timeout_s
    while True:
        _apply_events(records, shop)
        pending = [r for r in records if r.order_id and r.terminal is None]
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    gate = asyncio.Semaphore(8)

    async def look_up(r: OrderRecord) -> None:
        async with gate, session.get(f"{edge}/api/orders/{r.order_id}",
                                     headers=shop.admin) as resp:
            if resp.status != 200:
                return
            doc = await resp.json()
        if doc["status"] in ("APPROVED", "REJECTED", "CANCELLED"):
            r.terminal, r.via = doc["status"], "lookup"
            r.terminal_at = parse_occurred_at(doc.get("updated_at"))

    await asyncio.gather(*(look_up(r) for r in pending), return_exceptions=True)


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


# -- the run ------------------------------------------------------------------------------


async def _run(home: Path, *, rate: float, duration_s: float, decline_share: float,
               customers: int, products: int, warmup_s: float, drain_s: float,
               say: Callable[[str], None]) -> dict[str, Any]:
    import aiohttp
    import nats

    from mercato.runtime.broker import connect_options
    from mercato.runtime.paths import Home

    target = read_platform(home)
    say("mercato check before the run …")
    before, _ = await run_check(home)
    if before:
        say(f"[yellow]note:[/] mercato check already finds {len(before)} violation(s) before "
            "the run (kept apart below); a fresh platform gives a clean verdict")
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector,
                                     headers={"User-Agent": "mercato-bench"}) as session:
        try:
            await _json(session, "GET", f"{target.edge_url}/api/catalog/products",
                        params={"page_size": "1"})
        except (aiohttp.ClientError, OSError) as exc:
            raise BenchError(f"the edge {target.edge_url} does not answer ({exc}): see "
                             "mercato status") from exc
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
                _apply_events(recs, shop)
                answered = sum(1 for r in recs if r.http_status is not None or r.error)
                done = sum(1 for r in recs if r.terminal)
                say(f"  {recs[-1].sent_at - recs[0].sent_at:4.0f} s: sent {len(recs)}, "
                    f"answered {answered}, terminal {done}")

            say(f"measuring: {duration_s:g} s at {rate:g} orders/s, "
                f"{decline_share:.0%} declined cards, {len(shop.customers)} customers, "
                f"{len(shop.products)} products …")
            load_before = os.getloadavg()
            work0 = await _sample_work_or_none(home, nc, say)
            cpu0, cpu_t0 = sample_cpu(target.groups), time.monotonic()
            records = await place_orders(session, target.edge_url, shop, rate=rate,
                                         duration_s=duration_s, decline_share=decline_share,
                                         first_index=len(warm), progress=progress)
            say("waiting for every order to be terminal …")
            await wait_terminal(session, target.edge_url, shop, records, drain_s)
            cpu1, cpu_wall = sample_cpu(target.groups), time.monotonic() - cpu_t0
            work1 = await _sample_work_or_none(home, nc, say) if work0 is not None else None
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
        "records": [asdict(r) for r in records],
    }


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
    ok_rate = s["completed_per_s"] is not None and s["completed_per_s"] >= TARGET_ORDERS_PER_S
    ok_p99 = s["ttt_p99_ms"] is not None and s["ttt_p99_ms"] < TARGET_TTT_P99_MS
    ok_check = not report["check"]["violations"]
    table = Table(title=f"mercato bench orders: {cfg['rate']:g} orders/s offered for "
                        f"{cfg['duration_s']:g} s, {cfg['decline_share']:.0%} declined cards")
    for col in ("measure", "value", "target", ""):
        table.add_column(col, justify="right" if col == "value" else "left")

    def mark(ok: bool) -> str:
        return "[green]✔[/]" if ok else "[red]✘[/]"

    table.add_row("offered (achieved send rate)", f"{_fmt(s['offered_per_s'], '.1f')} /s",
                  "", "")
    table.add_row("completed orders", f"{_fmt(s['completed_per_s'], '.1f')} /s",
                  f"≥ {TARGET_ORDERS_PER_S:g} /s", mark(ok_rate))
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
    total = sum(report["cpu_s_per_order"].values()) or 1.0
    marginal = report.get("cpu_s_per_order_above_idle") or {}
    for who, sec in report["cpu_s_per_order"].items():
        cpu.add_row(who, f"{sec * 1000:.2f}", f"{sec / total:.0%}",
                    _fmt(None if who not in marginal else marginal[who] * 1000, ".2f"),
                    _fmt(report["idle_cpu_cores"].get(who), ".3f"))
    cpu.add_row("[bold]total[/]", f"[bold]{total * 1000:.2f}[/]", "",
                f"[bold]{sum(marginal.values()) * 1000:.2f}[/]", "")
    console.print(cpu)
    work = report.get("work_per_order") or {}
    if work:
        console.print("work per completed order (over the run): " + ", ".join(
            f"{k} {v:.1f}" for k, v in work.items()))
    cores = report.get("cores") or {}
    if cores:
        console.print("cores busy during the run: " + ", ".join(
            f"{k} {v:.2f}" for k, v in cores.items()) + f" (of {os.cpu_count()})")
    for v in chk["new_violations"][:10]:
        console.print(f"[red]violation:[/] {v['invariant']}: {v['subject']}: {v['detail']}")
    console.print(f"report: {report['report_file']}")


def run_orders_bench(home: Path, *, rate: float = 60.0, duration_s: float = 30.0,
                     decline_share: float = 0.2, customers: int = 20, products: int = 8,
                     warmup_s: float = 3.0, drain_s: float = 60.0,
                     report_file: Path | None = None) -> int:
    """Run it, print the tables, save the report. 0: met the target with a clean check;
    1: check found violations or orders never became terminal; 2: could not run; 3: ran
    clean but missed the throughput / latency target."""
    from rich.console import Console

    console = Console(stderr=True, highlight=False)

    def say(line: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {line}")

    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with the chassis
        runner = asyncio.run
    try:
        result = runner(_run(Path(home), rate=rate, duration_s=duration_s,
                             decline_share=decline_share, customers=customers,
                             products=products, warmup_s=warmup_s, drain_s=drain_s, say=say))
    except BenchError as exc:
        console.print(f"[red]bench orders:[/red] {exc}")
        return 2
    now = datetime.now(UTC)
    out = report_file or default_reports_dir() / "orders.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = result["summary"]
    report: dict[str, Any] = {
        "benchmark": "orders", "at": now.isoformat(),
        "config": {"rate": rate, "duration_s": duration_s, "decline_share": decline_share,
                   "customers": customers, "products": products, "warmup_s": warmup_s},
        "targets": {"completed_per_s": TARGET_ORDERS_PER_S, "ttt_p99_ms": TARGET_TTT_P99_MS},
        "meets_target": meets_target(summary) and not result["check"]["violations"],
        **{k: v for k, v in result.items() if k != "records"},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "report_file": str(out),
    }
    out.write_text(json.dumps(report, indent=1) + "\n")
    print_report(report)
    if result["check"]["violations"] or summary["not_terminal"]:
        return 1
    return 0 if meets_target(summary) else 3


if __name__ == "__main__":  # pragma: no cover - convenience for running without the CLI
    raise SystemExit(run_orders_bench(Path(sys.argv[1]) if len(sys.argv) > 1
                                      else Path(".mercato")))
