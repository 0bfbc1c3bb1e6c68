"""Order and shipping events through the real inbox consumers and PostgreSQL: each becomes
exactly one queued notification per (order, kind), however often it arrives."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from chassis.clock import utc_now
from chassis.db import Database
from chassis.messaging.consumer import Outcome
from chassis.messaging.envelope import Envelope
from contracts.orders.v1 import OrderPlaced
from notifications.domain.model import RetryPolicy
from notifications.service_layer.handlers import send_due
from notifications_kit import (
    Notifications,
    approved,
    cancelled,
    delivery,
    email,
    envelope,
    placed,
    rejected,
    shipment,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def notes(db: Database) -> Notifications:
    return Notifications(db)


async def test_each_event_queues_one_notification_of_its_kind(notes: Notifications) -> None:
    for event in (placed("o1"), approved("o1"), shipment("o1", "DISPATCHED"),
                  shipment("o1", "IN_TRANSIT"), shipment("o1", "DELIVERED"),
                  placed("o2"), rejected("o2"), placed("o3"), cancelled("o3")):
        assert await notes.send(event) == Outcome.HANDLED
    assert await notes.kinds() == [
        ("o1", "order_approved"), ("o1", "order_placed"), ("o1", "shipment_delivered"),
        ("o1", "shipment_dispatched"), ("o2", "order_placed"), ("o2", "order_rejected"),
        ("o3", "order_cancelled"), ("o3", "order_placed")]
    rows = await notes.rows()
    assert {r["status"] for r in rows} == {"queued"}
    assert {r["attempts"] for r in rows} == {0}
    assert all(r["recipient"] == email(r["order_id"]) for r in rows)
    dispatched = next(r for r in rows if r["kind"] == "shipment_dispatched")
    assert "MSO1" in dispatched["body"] and dispatched["subject"].endswith("is on its way")


async def test_duplicates_and_republished_events_still_make_one(notes: Notifications) -> None:
    first = envelope(placed("o1"))
    assert await notes.send(delivery(first)) == Outcome.HANDLED
    assert await notes.send(delivery(first)) == Outcome.DUPLICATE  # same message id
    # Re-published (outbox republish, saga retry): a new message id, the same facts. Acked
    # without effect, logged and counted as such.
    assert await notes.send(placed("o1")) == Outcome.DROPPED
    ship = envelope(shipment("o1", "DISPATCHED"))
    for _ in range(2):
        await notes.send(delivery(ship))
        await notes.send(shipment("o1", "DISPATCHED"))
    assert await notes.kinds() == [("o1", "order_placed"), ("o1", "shipment_dispatched")]


async def test_concurrent_republished_events_make_one(notes: Notifications) -> None:
    outcomes = await asyncio.gather(*(notes.send(approved("o1")) for _ in range(10)))
    assert sorted(outcomes) == [Outcome.DROPPED] * 9 + [Outcome.HANDLED]
    assert await notes.kinds() == [("o1", "order_approved")]


async def test_shipment_mail_is_addressed_from_what_the_order_taught(
        notes: Notifications) -> None:
    await notes.send(placed("o1"))
    await notes.send(approved("o1", with_email=False))  # an older producer: no email
    await notes.send(shipment("o1", "DELIVERED"))
    assert {r["kind"]: r["recipient"] for r in await notes.rows()} == {
        "order_placed": email("o1"), "order_approved": email("o1"),
        "shipment_delivered": email("o1")}


async def test_in_transit_sends_nothing(notes: Notifications) -> None:
    assert await notes.send(shipment("o1", "IN_TRANSIT")) == Outcome.HANDLED
    assert await notes.rows() == []


class Refusing:
    async def send(self, mail: object) -> None:
        raise AssertionError("nothing may be mailed")


async def test_unknown_recipient_is_failed_without_mailing(notes: Notifications,
                                                           db: Database) -> None:
    await notes.send(shipment("stranger", "DISPATCHED"))
    [row] = await notes.rows()
    assert (row["status"], row["recipient"]) == ("queued", None)
    # (Once it has waited for the approval email it follows, which never comes here.)
    done = await send_due(db, Refusing(), RetryPolicy(), me="notifications-1",
                          now=utc_now() + timedelta(seconds=121))
    assert (done.claimed, done.failed, done.sent) == (1, 1, 0)
    [row] = await notes.rows()
    assert (row["status"], row["last_error"], row["attempts"]) == (
        "failed", "unknown_recipient", 0)


async def test_recipient_learnt_before_the_sender_runs_is_used(notes: Notifications,
                                                               db: Database) -> None:
    # Events can overtake each other: the shipment mail is queued first, addressed later.
    await notes.send(shipment("o1", "DISPATCHED"))
    await notes.send(placed("o1"))
    sent: list[str] = []

    class Recording:
        async def send(self, mail: object) -> None:
            sent.append(mail.to)  # type: ignore[attr-defined]

    rounds = [await send_due(db, Recording(), RetryPolicy(), me="notifications-1")
              for _ in range(2)]
    # The order placed email first, though queued last; the dispatch one waits for the
    # approval's, which never comes here, so it goes once it has waited long enough.
    assert [r.sent for r in rounds] == [1, 0] and sent == [email("o1")]
    later = await send_due(db, Recording(), RetryPolicy(), me="notifications-1",
                           now=utc_now() + timedelta(seconds=121))
    assert later.sent == 1 and sent == [email("o1")] * 2
    assert [r["sent_at"] is not None for r in await notes.rows()] == [True, True]


async def test_an_invalid_event_is_dead_lettered_on_its_first_delivery(
        notes: Notifications) -> None:
    bad = Envelope.new(OrderPlaced.subject(), OrderPlaced.message_type(), {"order_id": "o1"})
    first = delivery(bad)
    assert await notes.send(first) == Outcome.DEAD_LETTERED and first.state == "acked"
    assert [m.subject for m in notes.dead_letters.messages] == ["dlq.notifications-orders"]
    assert await notes.rows() == []


async def test_an_order_event_learns_its_customer_and_queues_in_one_statement(
        notes: Notifications, database_url: str, pg_server: Any) -> None:
    """An order event that names the customer's email queues its notification and learns
    the customer (for the shipment's emails) in one round trip (ADR 0052): the inbox claim
    with its BEGIN, one statement, COMMIT. The first email learnt stays."""
    with pg_server.statements_logged(database_url.rsplit("/", 1)[1]) as logged:
        one = Database(database_url, pool_size=1)
        try:
            pid = (await one.fetch_once("SELECT pg_backend_pid() AS pid"))[0]["pid"]
            alone = Notifications(one)
            assert await alone.send(placed("o0")) == Outcome.HANDLED  # warms the connection
            before = len(logged(pid))
            assert await alone.send(placed("o1")) == Outcome.HANDLED
            sent = [" ".join(s.split(": ", 1)[1].split()) for s in logged(pid)[before:]]
            renamed = approved("o1").model_copy(update={"customer_email": "later@example.com"})
            assert await alone.send(renamed) == Outcome.HANDLED
            assert await alone.send(shipment("o1", "DISPATCHED")) == Outcome.HANDLED
        finally:
            await one.dispose()
    assert len(sent) == 3 and sent[1].startswith("WITH learnt AS (INSERT INTO customers"), sent
    recipients = {r["kind"]: r["recipient"] for r in await notes.rows("o1")}
    assert recipients == {"order_placed": email("o1"), "order_approved": "later@example.com",
                          "shipment_dispatched": email("o1")}
