"""The sender against a real mail sink process: one email per (order, kind), retries while
SMTP is down, and several senders never mail the same notification twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import timedelta

import pytest
from chassis.db import Database
from notifications.adapters.smtp import SmtpMailer
from notifications.domain.model import RetryPolicy
from notifications.entrypoints.sender import run_sender
from notifications.service_layer.handlers import send_due
from notifications_kit import (
    MailSink,
    Notifications,
    approved,
    email,
    placed,
    rejected,
    shipment,
)

pytestmark = pytest.mark.integration

FROM = "mercato <no-reply@mercato.local>"
FAST = RetryPolicy(max_attempts=50, base=timedelta(seconds=0.05), cap=timedelta(seconds=0.2))


def mailer(sink: MailSink) -> SmtpMailer:
    return SmtpMailer("127.0.0.1", sink.smtp_port, mail_from=FROM, timeout_s=2)


async def wait_for(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout_s):
        while not await condition():
            await asyncio.sleep(0.05)


async def test_each_notification_reaches_the_sink_exactly_once(db: Database,
                                                               sink: MailSink) -> None:
    sink.start()
    notes = Notifications(db)
    lifecycle = [placed("o1"), approved("o1"), shipment("o1", "DISPATCHED"),
                 shipment("o1", "IN_TRANSIT"), shipment("o1", "DELIVERED"),
                 placed("o2"), rejected("o2")]
    for event in lifecycle + lifecycle:  # everything re-published once more
        await notes.send(event)
    done = await send_due(db, mailer(sink), FAST)
    assert (done.claimed, done.sent, done.retried, done.failed) == (6, 6, 0, 0)
    assert (await send_due(db, mailer(sink), FAST)).claimed == 0  # nothing left to send
    got = sink.messages()
    assert Counter(m["notification"] for m in got) == {
        "o1/order_placed": 1, "o1/order_approved": 1, "o1/shipment_dispatched": 1,
        "o1/shipment_delivered": 1, "o2/order_placed": 1, "o2/order_rejected": 1}
    for m in got:
        order = m["notification"].split("/")[0]
        assert m["to"] == [email(order)] and m["mail_from"] == "no-reply@mercato.local"
        assert order in m["subject"] and order in m["body"]
    rows = await notes.rows()
    assert {r["status"] for r in rows} == {"sent"}
    assert all(r["sent_at"] is not None and r["attempts"] == 1 for r in rows)


async def test_two_senders_share_the_work_and_never_send_twice(db: Database,
                                                               sink: MailSink) -> None:
    sink.start()
    notes = Notifications(db)
    for i in range(12):
        await notes.send(placed(f"o{i}"))
    rounds = await asyncio.gather(*(send_due(db, mailer(sink), FAST, limit=4)
                                    for _ in range(3)))
    while (more := await send_due(db, mailer(sink), FAST, limit=4)).claimed:
        rounds.append(more)
    assert sum(r.sent for r in rounds) == 12
    assert sorted(m["notification"] for m in sink.messages()) == sorted(
        f"o{i}/order_placed" for i in range(12))


async def test_smtp_down_is_retried_until_the_sink_comes_up(db: Database,
                                                            sink: MailSink) -> None:
    notes = Notifications(db)
    await notes.send(placed("o1"))
    stop = asyncio.Event()
    sender = asyncio.create_task(run_sender(db, stop, mailer(sink), FAST, interval_s=0.05))
    try:
        async def retried() -> bool:
            [row] = await notes.rows()
            return row["attempts"] >= 2
        await wait_for(retried)
        [row] = await notes.rows()
        assert row["status"] == "queued" and row["last_error"]  # still queued, error kept
        sink.start()

        async def sent() -> bool:
            return (await notes.rows())[0]["status"] == "sent"
        await wait_for(sent)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(sender, 5)
    [row] = await notes.rows()
    assert row["last_error"] is None and row["sent_at"] is not None
    assert [m["notification"] for m in sink.messages()] == ["o1/order_placed"]


async def test_a_send_that_keeps_failing_ends_failed(db: Database, sink: MailSink) -> None:
    notes = Notifications(db)
    await notes.send(placed("o1"))
    policy = RetryPolicy(max_attempts=3, base=timedelta(seconds=0.02),
                         cap=timedelta(seconds=0.05))
    stop = asyncio.Event()
    sender = asyncio.create_task(run_sender(db, stop, mailer(sink), policy, interval_s=0.02))
    try:
        async def failed() -> bool:
            return (await notes.rows())[0]["status"] == "failed"
        await wait_for(failed)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(sender, 5)
    [row] = await notes.rows()
    assert row["attempts"] == 3 and row["sent_at"] is None
    assert "connect" in row["last_error"].lower()


async def test_a_crash_after_claiming_resends_only_after_the_lease(db: Database,
                                                                   sink: MailSink) -> None:
    """The documented at-least-once edge: a claim whose sender died is taken again only
    once its lease has run out."""
    sink.start()
    notes = Notifications(db)
    await notes.send(placed("o1"))

    class Dying:
        async def send(self, mail: object) -> None:
            raise asyncio.CancelledError  # the process dies mid-send

    with pytest.raises(asyncio.CancelledError):
        await send_due(db, Dying(), FAST, lease=timedelta(seconds=0.5))
    assert (await send_due(db, mailer(sink), FAST)).claimed == 0  # leased
    await asyncio.sleep(0.6)
    assert (await send_due(db, mailer(sink), FAST)).sent == 1
    [row] = await notes.rows()
    assert (row["status"], row["attempts"]) == ("sent", 2)


async def test_the_sink_keeps_its_messages_across_restarts(db: Database,
                                                          sink: MailSink) -> None:
    sink.start()
    notes = Notifications(db)
    await notes.send(placed("o1"))
    assert (await send_due(db, mailer(sink), FAST)).sent == 1
    assert sink.stop() == 0  # SIGTERM is a clean exit
    sink.start()
    assert [m["notification"] for m in sink.messages()] == ["o1/order_placed"]


async def test_one_kept_connection_carries_many_mails_and_outlives_a_sink_restart(
        db: Database, sink: MailSink) -> None:
    sink.start()
    notes = Notifications(db)
    for order in ("o1", "o2", "o3"):
        await notes.send(placed(order))
    kept = mailer(sink)
    assert (await send_due(db, kept, FAST)).sent == 3
    connection = kept._smtp
    assert connection is not None and connection.is_connected  # kept for the next email
    await notes.send(placed("o4"))
    assert (await send_due(db, kept, FAST)).sent == 1
    assert kept._smtp is connection  # the same one, not a connect per email
    assert sink.stop() == 0  # the kept connection goes stale
    sink.start()
    await notes.send(placed("o5"))
    assert (await send_due(db, kept, FAST)).sent == 1  # retried once on a fresh connection
    assert kept._smtp is not connection
    await kept.close_connection()
    assert sorted(m["notification"] for m in sink.messages()) == [
        f"o{i}/order_placed" for i in range(1, 6)]
