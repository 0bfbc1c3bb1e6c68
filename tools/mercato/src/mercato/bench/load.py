"""The open-model order sender and the terminal-event listener shared by the load commands.

Sends are scheduled at fixed instants (order i at ``start + i / rate``) whatever the answers:
a slow platform shows up as latency and a growing backlog, never as a lower offered load.
Terminal instants are read from the orders service's own ``order_approved`` /
``order_rejected`` events (``Mercato-Occurred-At``, stamped in the transaction that ended
the saga), heard on plain NATS subscriptions: nothing is acked or stored for the listener."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mercato.bench.shop import Customer, Shop

TERMINAL_SUBJECTS = {"orders.events.order_approved": "APPROVED",
                     "orders.events.order_rejected": "REJECTED"}
OCCURRED_AT = "Mercato-Occurred-At"


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
                       stop: asyncio.Event | None = None) -> list[OrderRecord]:
    """Send at the scheduled instants, without waiting for answers (open model); for
    ``duration_s`` or until ``stop`` is set, whichever comes first."""
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
        if stop is not None:
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                break
        elif delay > 0:
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


def apply_events(records: list[OrderRecord], shop: Shop) -> None:
    for r in records:
        if r.order_id and r.terminal is None and r.order_id in shop.events:
            r.terminal, r.terminal_at, r.seen_at = shop.events[r.order_id]
            r.via = "event"


async def wait_terminal(session: Any, edge: str, shop: Shop, records: list[OrderRecord],
                        timeout_s: float) -> None:
    """Until every accepted order's terminal event arrived; then look up the rest once."""
    deadline = time.monotonic() + timeout_s
    while True:
        apply_events(records, shop)
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

