"""Faults from outside on the running platform: the notifications process killed with emails
claimed, and a reply for a saga that does not exist."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections import Counter
from typing import Any

import httpx2 as httpx
import psutil
import pytest
from chassis.messaging.dlq import list_dead_letters
from chassis.messaging.envelope import Envelope
from contracts.inventory.v1 import StockLine, StockReserved
from edge_helpers import Platform, mercato, nats_connect, superuser_connect, wait_until
from mercato.runtime.paths import Home
from mercato.runtime.services import simulator_token
from shop import bearer, customer_with_address, new_product, place, settled

pytestmark = pytest.mark.e2e


def sql(platform: Platform, database: str, statement: str, *args: Any) -> list[Any]:
    async def run() -> list[Any]:
        conn = await superuser_connect(platform, database)
        try:
            return list(await conn.fetch(statement, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def own_process(platform: Platform, name: str) -> psutil.Process:
    """The process of ``name`` in this platform's state, checked to be this home's."""
    entry = platform.state()["processes"][name]
    assert entry["state"] == "ready" and entry["pid"], entry
    proc = psutil.Process(entry["pid"])
    assert proc.environ().get("MERCATO_RUNTIME_HOME") == str(platform.home)
    return proc


@pytest.mark.timeout(300)
def test_emails_claimed_by_a_killed_sender_go_out_at_its_restart_in_order(
        platform: Platform) -> None:
    """The mail server stalls, the sender holds the orders' first emails, and is killed -9.
    Restarted, it sends them at once (not when their 60 s lease ends), each order's emails
    still in their order -- also when the kill lost an OrderPlaced being handled, which
    comes back 30 s later, after its OrderApproved --, with at most the documented one
    extra per crash."""
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = new_product(c, admin, on_hand=10)
        auth, address_id = customer_with_address(platform, c)
        sink = own_process(platform, "mailsink")
        sender = own_process(platform, "notifications-1")
        restarts = platform.state()["processes"]["notifications-1"]["restarts"]
        sink.suspend()  # SIGSTOP: SMTP connections hang, the sender with them
        try:
            orders = [place(c, auth, product, address_id, "4242424242424242")
                      for _ in range(3)]

            def claimed() -> list[Any]:
                return sql(platform, "notifications",
                           "SELECT id, order_id, kind, next_attempt_at AS lease_until "
                           "FROM notifications WHERE order_id = ANY($1) AND status = 'queued' "
                           "AND claimed_by = 'notifications-1'", orders)
            held = wait_until(claimed, 60, "the sender to claim the orders' emails")
            sender.send_signal(signal.SIGKILL)
        finally:
            with contextlib.suppress(psutil.NoSuchProcess):  # the supervisor may have
                sink.resume()                                 # replaced the stopped sink
        for order_id in orders:
            assert settled(c, auth, order_id)["status"] == "APPROVED"

    def restarted() -> bool:
        now = platform.state()["processes"]["notifications-1"]
        return now["restarts"] > restarts and now["state"] == "ready"
    wait_until(restarted, 60, "notifications-1 restarted")

    expected = {f"{o}/{k}" for o in orders for k in ("order_placed", "order_approved")}

    def all_sent() -> list[Any]:
        rows = sql(platform, "notifications", "SELECT id, status, sent_at FROM notifications "
                   "WHERE order_id = ANY($1) AND kind IN ('order_placed', 'order_approved')",
                   orders)
        return rows if len(rows) == 6 and {r["status"] for r in rows} == {"sent"} else []
    rows = {r["id"]: r for r in wait_until(all_sent, 90, "every email of the orders sent")}
    for claim in held:  # released by the restart, not waited out
        assert rows[claim["id"]]["sent_at"] < claim["lease_until"], (claim, rows[claim["id"]])

    url = f"http://127.0.0.1:{platform.state()['processes']['mailsink']['port']}/messages"
    token = simulator_token(Home(platform.home), "mailsink")
    mails = [m for m in httpx.get(url, timeout=10, headers={"Authorization": f"Bearer {token}"})
             .json() if m["notification"] in expected]
    got = Counter(m["notification"] for m in mails)
    assert set(got) == expected
    assert sum(got.values()) - len(expected) <= 1, got  # one crash: at most one extra
    for order_id in orders:  # the sink stores in arrival order
        kinds = [m["notification"].split("/")[1] for m in mails
                 if m["notification"].startswith(order_id)]
        assert kinds.index("order_placed") < kinds.index("order_approved"), kinds


def test_a_reply_for_a_saga_that_does_not_exist_is_logged_counted_and_dead_lettered(
        platform: Platform) -> None:
    ghost = str(uuid.uuid4())
    reply = StockReserved(reservation_id=ghost, order_id=ghost,
                          lines=[StockLine(sku="MUG-001", quantity=1)],
                          expires_at="2026-11-22T10:00:00+00:00")
    envelope = Envelope.new(reply.subject(), reply.message_type(), reply.to_payload(),
                            correlation_id=ghost)

    async def publish() -> None:
        nc = await nats_connect(platform)
        try:
            await nc.jetstream().publish(envelope.subject, envelope.body(),
                                         headers=envelope.headers())
        finally:
            await nc.close()

    asyncio.run(publish())
    consumer = "orders-saga-replies-inventory"

    def dead_letter() -> str | None:
        async def find() -> str | None:
            nc = await nats_connect(platform)
            try:
                for letter in await list_dead_letters(nc.jetstream(), consumer, 10_000):
                    if letter.message_id == str(envelope.message_id):
                        return str(letter.sequence)
                return None
            finally:
                await nc.close()
        return asyncio.run(find())
    seq = wait_until(dead_letter, 30, "the reply in the dead letters")
    shown = mercato(platform.home, "dlq", "show", seq).stdout
    assert "does not exist here" in shown and ghost in shown

    orders_port = platform.state()["processes"]["orders-1"]["port"]

    def metric(name: str) -> float | None:
        text = httpx.get(f"http://127.0.0.1:{orders_port}/metrics", timeout=10).text
        return next((float(line.split()[-1]) for line in text.splitlines()
                     if line.startswith(name)), None)

    dropped = (f'consumer_messages_dropped_total{{consumer="{consumer}",'
               'reason="unknown_saga",service="orders"}')
    assert (metric(dropped) or 0) >= 1, dropped
    # The dead letter shows as waiting (sampled from the stream every 5 s, under the
    # service's own broker permissions), and stops showing once discarded.
    waiting = f'dead_letters_waiting{{consumer="{consumer}",service="orders"}}'
    before = wait_until(lambda: (metric(waiting) or 0) >= 1 and metric(waiting), 30,
                        "the dead letter counted as waiting")

    logged = mercato(platform.home, "logs", "orders", "--tail", "0").stdout
    assert any("message_dead_lettered" in line and ghost in line
               for line in logged.splitlines())

    # An operator who judged it harmless removes it.
    assert f"discarded dead letter {seq}" in mercato(platform.home, "dlq", "discard",
                                                      seq).stdout
    assert mercato(platform.home, "dlq", "show", seq, check=False).returncode == 1
    wait_until(lambda: metric(waiting) == before - 1, 30, "one dead letter fewer waiting")


def test_the_platform_still_checks_clean(platform: Platform) -> None:
    res = mercato(platform.home, "check", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
