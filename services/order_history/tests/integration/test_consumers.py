"""Events into the real inbox consumers and PostgreSQL: in order, out of order, twice."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest
from chassis.db import Database
from chassis.messaging.envelope import Envelope
from contracts.orders.v1 import OrderPlaced, OrderRejected
from contracts.payments.v1 import PaymentCaptured, PaymentDeclined, PaymentVoided
from contracts.shipping.v1 import (
    ShipmentCancellationRefused,
    ShipmentCancelled,
    ShipmentStatusChanged,
)
from order_history_kit import History, delivery, envelope, life, refunded_cancel
from sqlalchemy import text

pytestmark = pytest.mark.integration


async def test_a_happy_order_in_saga_order(db: Database) -> None:
    h = History(db)
    for event in life("o1"):
        assert await h.send(event) == "handled"
    row = await h.row("o1")
    assert row is not None
    assert (row["customer_id"], row["status"], row["total"], row["currency"]) == (
        "alice", "APPROVED", Decimal("30000"), "KRW")
    assert row["lines"] == [{"product_id": "p1", "sku": "MUG", "name": "Mug", "quantity": 2,
                             "unit_price": "15000"}]
    assert (row["payment_status"], row["amount_captured"], row["amount_refunded"]) == (
        "CAPTURED", Decimal("30000"), None)
    assert (row["shipment_status"], row["tracking_number"]) == ("DISPATCHED", "MSO1")
    assert row["reason"] is None and row["placed_at"] is not None
    assert row["last_event_at"] >= row["placed_at"]


async def test_any_arrival_order_gives_the_same_row(db: Database) -> None:
    envelopes = [envelope(e) for e in life("o2")]
    in_order = History(db)
    for env in envelopes:
        await in_order.send(env)
    expected = await in_order.row("o2")
    rng = random.Random(7)
    for attempt in range(5):
        await _forget(db)
        shuffled = envelopes[:]
        rng.shuffle(shuffled)
        if attempt == 0:  # the worst case: everything after the order first, newest first
            shuffled = envelopes[::-1]
        h = History(db)
        for env in shuffled:
            assert await h.send(env) == "handled"
        assert await h.row("o2") == expected, [e.message_type for e in shuffled]


async def test_a_late_older_event_never_sets_a_status_back(db: Database) -> None:
    h = History(db)
    [placed, authorized, created, captured, approved, dispatched] = life("o3")
    await h.send(dispatched)
    await h.send(ShipmentStatusChanged(shipment_id="ship-o3", order_id="o3",
                                       customer_id="alice", status="DELIVERED",
                                       tracking_number="MSO3"))
    await h.send(approved)
    await h.send(captured)
    for old in (created, authorized, placed, dispatched):
        await h.send(old)
    row = await h.row("o3")
    assert row is not None
    assert (row["status"], row["payment_status"], row["shipment_status"]) == (
        "APPROVED", "CAPTURED", "DELIVERED")
    assert row["total"] == Decimal("30000") and row["lines"]


async def test_a_row_without_a_customer_waits_for_the_order(db: Database) -> None:
    h = History(db)
    await h.send(PaymentCaptured(payment_id="p", order_id="o4", amount="12.50",
                                 currency="KRW"))
    row = await h.row("o4")
    assert row is not None
    assert (row["customer_id"], row["status"], row["payment_status"],
            row["amount_captured"]) == (None, None, "CAPTURED", Decimal("12.50"))
    await h.send(OrderPlaced(order_id="o4", customer_id="bob", lines=[], total="12.50",
                             currency="KRW"))
    row = await h.row("o4")
    assert row is not None
    assert (row["customer_id"], row["status"], row["payment_status"]) == (
        "bob", "PENDING", "CAPTURED")


async def test_duplicates_never_double_the_totals(db: Database) -> None:
    h = History(db)
    events = [envelope(e) for e in refunded_cancel("o5")]
    for env in events:
        await h.send(env)
    expected = await h.row("o5")
    # Redelivered with the same message id: the inbox drops them.
    for env in events:
        assert await h.send(delivery(env).redelivered()) == "duplicate"
    # Published again under new ids (a repeated command answered twice): the merge keeps
    # the captured and refunded amounts, it does not add them up.
    for event in refunded_cancel("o5"):
        assert await h.send(event) == "handled"
    row = await h.row("o5")
    assert row is not None
    assert (row["amount_captured"], row["amount_refunded"]) == (Decimal("30000"),
                                                                Decimal("30000"))
    assert (row["status"], row["reason"], row["payment_status"]) == (
        "CANCELLED", "customer", "REFUNDED")
    assert {k: v for k, v in row.items() if k != "last_event_at"} == \
        {k: v for k, v in (expected or {}).items() if k != "last_event_at"}


async def test_terminal_outcomes_win_whatever_comes_later(db: Database) -> None:
    h = History(db)
    await h.send(OrderRejected(order_id="o6", customer_id="alice", reason="card_declined"))
    await h.send(PaymentDeclined(payment_id="p6", order_id="o6", reason="card_declined"))
    await h.send(ShipmentCancelled(shipment_id="s6", order_id="o6"))
    await h.send(ShipmentCancellationRefused(shipment_id="s6", order_id="o6",
                                             status="DISPATCHED"))
    for event in life("o6")[:3]:  # the older steps, late
        await h.send(event)
    await h.send(PaymentVoided(payment_id="p6", order_id="o6"))
    row = await h.row("o6")
    assert row is not None
    assert (row["status"], row["reason"], row["payment_status"], row["shipment_status"]) == (
        "REJECTED", "card_declined", "DECLINED", "CANCELLED")


async def test_poison_messages_are_dead_lettered_at_once_and_write_nothing(
        db: Database) -> None:
    h = History(db)
    bad_amount = Envelope.new(PaymentCaptured.subject(), PaymentCaptured.message_type(),
                              {"payment_id": "p", "order_id": "o7", "amount": "lots",
                               "currency": "KRW"})
    first = delivery(bad_amount)
    assert await h.send(first) == "dead_lettered" and first.state == "acked"
    too_long = OrderPlaced(order_id="o" * 201, customer_id="alice", lines=[], total="1",
                           currency="KRW")
    assert await h.send(too_long) == "dead_lettered"
    # An unknown type may be known to a newer instance: retried until max_deliver.
    unknown = delivery(Envelope.new("orders.events.order_shipped", "OrderShipped.v1",
                                    {"order_id": "o7"}))
    assert await h.send(unknown) == "retry" and unknown.state == "naked"
    for _ in range(4):
        unknown = unknown.redelivered()
    assert await h.send(unknown) == "dead_lettered"
    assert await h.rows() == {}
    assert len(h.dead_letters.messages) == 3


async def _forget(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text("TRUNCATE order_view"))
        await conn.execute(text("DELETE FROM inbox"))


async def test_an_orders_first_event_writes_its_row_in_one_statement(
        db: Database, database_url: str, pg_server: Any) -> None:
    """The first event of an order (usually OrderPlaced) finds no row and writes the whole
    row in one statement (ADR 0052): the inbox claim with its BEGIN, the insert, COMMIT. A
    later event locks the row and merges into it."""
    with pg_server.statements_logged(database_url.rsplit("/", 1)[1]) as logged:
        one = Database(database_url, pool_size=1)
        try:
            pid = (await one.fetch_once("SELECT pg_backend_pid() AS pid"))[0]["pid"]
            h = History(one)
            for event in life("o0"):  # warms the connection (asyncpg's type queries)
                assert await h.send(event) == "handled"
            first, *later = life("o1")
            before = len(logged(pid))
            assert await h.send(first) == "handled"
            sent = [" ".join(s.split(": ", 1)[1].split()) for s in logged(pid)[before:]]
            before = len(logged(pid))
            assert await h.send(later[-2]) == "handled"  # OrderApproved
            sent_later = [" ".join(s.split(": ", 1)[1].split()) for s in logged(pid)[before:]]
            for event in later[:-2] + later[-1:]:
                assert await h.send(event) == "handled"
        finally:
            await one.dispose()
    assert len(sent) == 3 and sent[1].startswith("INSERT INTO order_view"), sent
    # The lock (an upsert that returns the row) and the merged row's UPDATE; no insert first.
    assert len(sent_later) == 4 and sent_later[1].startswith("INSERT INTO order_view (order_id, "
                                                             "last_event_at)"), sent_later
    assert sent_later[2].startswith("UPDATE order_view"), sent_later
    rows = await History(db).rows("o0", "o1")
    assert {k: v for k, v in rows["o1"].items() if k not in ("order_id", "tracking_number",
                                                               "placed_at", "last_event_at",
                                                               "updated_at")} == {
        k: v for k, v in rows["o0"].items() if k not in ("order_id", "tracking_number",
                                                          "placed_at", "last_event_at",
                                                          "updated_at")}
    assert rows["o1"]["status"] == "APPROVED"
