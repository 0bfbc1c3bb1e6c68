"""The sender against a real mail sink process: one email per (order, kind), in order per
order, retries while SMTP is down, several senders never mail the same notification twice,
and a crashed sender's emails go out again within seconds (not after the lease)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from chassis.background import BackgroundTasks
from chassis.clock import utc_now
from chassis.db import Database
from mercato.testing.infra import PgServer
from notifications.adapters.repository import _CLAIM, _MARK_SENT, SenderRepository
from notifications.adapters.smtp import OutgoingMail, SmtpMailer
from notifications.domain.model import RetryPolicy
from notifications.entrypoints.background import Sender
from notifications.service_layer.handlers import SendRound, register_sender, send_due
from notifications_kit import (
    MailSink,
    Notifications,
    approved,
    email,
    placed,
    rejected,
    shipment,
)
from prometheus_client import CollectorRegistry
from sqlalchemy import text

pytestmark = pytest.mark.integration

FROM = "mercato <no-reply@mercato.local>"
FAST = RetryPolicy(max_attempts=50, base=timedelta(seconds=0.05), cap=timedelta(seconds=0.2))


ME, OTHER = "notifications-1", "notifications-2"
HOUR = timedelta(hours=1)


def mailer(sink: MailSink) -> SmtpMailer:
    return SmtpMailer("127.0.0.1", sink.smtp_port, mail_from=FROM, timeout_s=2)


async def send_all(db: Database, mail: Any, me: str = ME, **kw: Any) -> SendRound:
    """Rounds until one claims nothing (an order's next email waits for the one before)."""
    total = SendRound()
    while (done := await send_due(db, mail, FAST, me=me, **kw)).claimed:
        for name in ("claimed", "sent", "retried", "failed", "lost"):
            setattr(total, name, getattr(total, name) + getattr(done, name))
    return total


class Dying:
    """The process dies in the middle of the SMTP exchange (the server got nothing)."""

    async def send(self, mail: object) -> None:
        raise asyncio.CancelledError


def order_kinds(messages: list[dict[str, Any]], order: str) -> list[str]:
    return [m["notification"].split("/")[1] for m in messages
            if m["notification"].startswith(order + "/")]


def start_sender(db: Database, smtp: SmtpMailer, policy: RetryPolicy, *, interval_s: float,
                 **kw: Any) -> BackgroundTasks:
    """The sender as the app runs it: its tasks on a background runner."""
    tasks = BackgroundTasks(CollectorRegistry())
    Sender(db, smtp, policy, me=ME, **kw).declare(tasks, interval_s=interval_s)
    tasks.start()
    return tasks


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
    done = await send_all(db, mailer(sink))
    assert (done.claimed, done.sent, done.retried, done.failed) == (6, 6, 0, 0)
    assert (await send_due(db, mailer(sink), FAST, me=ME)).claimed == 0  # nothing left
    got = sink.messages()
    assert order_kinds(got, "o1") == ["order_placed", "order_approved", "shipment_dispatched",
                                      "shipment_delivered"]
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
    rounds = await asyncio.gather(*(send_due(db, mailer(sink), FAST, me=f"notifications-{i}",
                                             limit=4) for i in range(3)))
    while (more := await send_due(db, mailer(sink), FAST, me=ME, limit=4)).claimed:
        rounds.append(more)
    assert sum(r.sent for r in rounds) == 12
    assert sorted(m["notification"] for m in sink.messages()) == sorted(
        f"o{i}/order_placed" for i in range(12))


async def test_smtp_down_is_retried_until_the_sink_comes_up(db: Database,
                                                            sink: MailSink) -> None:
    notes = Notifications(db)
    await notes.send(placed("o1"))
    sender = start_sender(db, mailer(sink), FAST, interval_s=0.05)
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
        await sender.stop()
    [row] = await notes.rows()
    assert row["last_error"] is None and row["sent_at"] is not None
    assert [m["notification"] for m in sink.messages()] == ["o1/order_placed"]


async def test_a_send_that_keeps_failing_ends_failed(db: Database, sink: MailSink) -> None:
    notes = Notifications(db)
    await notes.send(placed("o1"))
    policy = RetryPolicy(max_attempts=3, base=timedelta(seconds=0.02),
                         cap=timedelta(seconds=0.05))
    sender = start_sender(db, mailer(sink), policy, interval_s=0.02)
    try:
        async def failed() -> bool:
            return (await notes.rows())[0]["status"] == "failed"
        await wait_for(failed)
    finally:
        await sender.stop()
    [row] = await notes.rows()
    assert row["attempts"] == 3 and row["sent_at"] is None
    assert "connect" in row["last_error"].lower()


async def claimed_by(notes: Notifications) -> dict[str, str | None]:
    return {f"{r['order_id']}/{r['kind']}": r["claimed_by"] for r in await notes.rows()
            if r["status"] == "queued"}


async def test_a_restarted_sender_releases_its_claims_at_once(db: Database,
                                                              sink: MailSink) -> None:
    """kill -9 with emails claimed under a long lease: the same instance, restarted, sends
    them straight away instead of when the lease runs out."""
    sink.start()
    notes = Notifications(db)
    await notes.send(placed("o1"))
    await register_sender(db, ME)
    with pytest.raises(asyncio.CancelledError):
        await send_due(db, Dying(), FAST, me=ME, lease=HOUR)
    assert await claimed_by(notes) == {"o1/order_placed": ME}
    # Held: neither the (live) holder's lease nor another sender lets it go.
    assert (await send_due(db, mailer(sink), FAST, me=OTHER)).claimed == 0
    assert await register_sender(db, ME) == 1  # the restart: its predecessor's claim is void
    assert (await send_due(db, mailer(sink), FAST, me=ME)).sent == 1
    [row] = await notes.rows()
    assert (row["status"], row["attempts"], row["claimed_by"]) == ("sent", 2, None)
    assert row["sent_at"] - row["created_at"] < HOUR  # not after the lease
    assert [m["notification"] for m in sink.messages()] == ["o1/order_placed"]


async def test_the_sender_loop_releases_at_start_beats_and_retires(db: Database,
                                                                    sink: MailSink) -> None:
    sink.start()
    notes = Notifications(db)
    await notes.send(placed("o1"))
    with pytest.raises(asyncio.CancelledError):  # a predecessor under this name died
        await send_due(db, Dying(), FAST, me=ME, lease=HOUR)
    sender = start_sender(db, mailer(sink), FAST, interval_s=0.05,
                          stale_after=timedelta(seconds=1))

    async def beats() -> list[Any]:
        async with db.engine.connect() as conn:
            return list((await conn.execute(text(
                "SELECT beat_at FROM senders WHERE instance_id = :me"), {"me": ME})).scalars())

    try:
        async def sent() -> bool:
            return (await notes.rows())[0]["status"] == "sent"
        await wait_for(sent)  # at once, not after the hour-long lease
        [first] = await beats()

        async def beat_again() -> bool:
            return (await beats())[0] > first
        await wait_for(beat_again)  # every fifth of stale_after
    finally:
        await sender.stop()
    assert await beats() == []  # a clean stop leaves no beat to wait on


async def test_a_fresh_claim_is_held_even_by_a_sender_without_a_beat(db: Database,
                                                                      sink: MailSink) -> None:
    """The race that once mailed an email twice, made to happen: a sender that has no beat
    row (it never registered) claims, and while its SMTP call runs another sender looks.
    Only a beat that is there and stale voids a claim; a missing one leaves it to its lease."""
    sink.start()
    notes = Notifications(db)
    for order in ("o1", "o2"):
        await notes.send(placed(order))
    smtp = mailer(sink)
    in_flight, resume = asyncio.Event(), asyncio.Event()

    class Slow:
        async def send(self, mail: OutgoingMail) -> None:
            in_flight.set()
            await resume.wait()
            await smtp.send(mail)

    holder = asyncio.create_task(send_due(db, Slow(), FAST, me=ME))
    await asyncio.wait_for(in_flight.wait(), 10)
    assert set((await claimed_by(notes)).values()) == {ME}
    assert (await send_due(db, smtp, FAST, me=OTHER)).claimed == 0
    resume.set()
    done = await holder
    assert (done.claimed, done.sent, done.lost) == (2, 2, 0)
    assert sorted(m["notification"] for m in sink.messages()) == [
        "o1/order_placed", "o2/order_placed"]
    await smtp.close_connection()


async def test_a_clean_stop_releases_what_a_round_cut_short_held(db: Database,
                                                                  sink: MailSink) -> None:
    """Shutdown cancels a round stuck on a mail server: its claims are due again at once for
    the other senders, not after the lease (its beat is gone, so nothing else would void
    them)."""
    sink.start()
    notes = Notifications(db)
    await notes.send(placed("o1"))
    in_flight = asyncio.Event()

    class Hung:
        async def send(self, mail: OutgoingMail) -> None:
            in_flight.set()
            await asyncio.Event().wait()

    sender = start_sender(db, Hung(), FAST, interval_s=0.05)  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(in_flight.wait(), 10)
        assert await claimed_by(notes) == {"o1/order_placed": ME}
    finally:
        await sender.stop()
    assert await claimed_by(notes) == {"o1/order_placed": None}
    assert (await send_due(db, mailer(sink), FAST, me=OTHER)).sent == 1
    assert [m["notification"] for m in sink.messages()] == ["o1/order_placed"]


async def test_claims_of_a_sender_whose_heartbeat_stopped_are_taken_over(
        db: Database, sink: MailSink) -> None:
    """A sender paused past its heartbeat (SIGSTOP, a frozen VM) loses its claims to another,
    and once it runs again it sends only the email it was in the middle of -- the one
    duplicate the mail protocol leaves open -- not the rest of its batch."""
    sink.start()
    notes = Notifications(db)
    for order in ("o1", "o2", "o3"):
        await notes.send(placed(order))
    await register_sender(db, ME)
    await register_sender(db, OTHER)
    smtp = mailer(sink)
    in_flight, resume = asyncio.Event(), asyncio.Event()

    class Paused:
        async def send(self, mail: OutgoingMail) -> None:
            in_flight.set()
            await resume.wait()  # the process stops right here, mid-send
            await smtp.send(mail)

    paused = asyncio.create_task(send_due(db, Paused(), FAST, me=ME, lease=HOUR))
    await asyncio.wait_for(in_flight.wait(), 10)
    assert set((await claimed_by(notes)).values()) == {ME}
    # While its heartbeat is fresh nobody else takes them; 11 s later it is stale. The other
    # sender mails the first and fails on the others (back to queued, held by nobody).
    assert (await send_due(db, smtp, FAST, me=OTHER)).claimed == 0
    sent_by_other: list[str] = []

    class FirstOnly:
        async def send(self, mail: OutgoingMail) -> None:
            if sent_by_other:
                raise ConnectionError("the mail server hung up")
            sent_by_other.append(mail.order_id)
            await smtp.send(mail)

    later = utc_now() + timedelta(seconds=11)
    taken = await send_due(db, FirstOnly(), FAST, me=OTHER, now=later)
    assert (taken.claimed, taken.sent, taken.retried) == (3, 1, 2)
    resume.set()
    was_paused = await paused
    # Its in-flight email goes out (again); the two it no longer holds do not.
    assert (was_paused.claimed, was_paused.sent, was_paused.lost) == (3, 1, 2)

    async def retried() -> bool:  # the other's retries, once their delay (50 ms) is over
        await send_all(db, smtp, me=OTHER)
        return {r["status"] for r in await notes.rows()} == {"sent"}
    await wait_for(retried)
    got = Counter(m["notification"] for m in sink.messages())
    assert got == {"o1/order_placed": 2, "o2/order_placed": 1, "o3/order_placed": 1}
    await smtp.close_connection()


async def test_an_orders_emails_go_out_in_order_whatever_happens_to_one(
        db: Database, sink: MailSink) -> None:
    """An email is not sent while an earlier one of its order is unsent: being retried, or
    claimed by another sender (the crash that once let "dispatched" overtake "approved")."""
    sink.start()
    notes = Notifications(db)
    for event in (shipment("o1", "DISPATCHED"), approved("o1"), placed("o1"), placed("o2")):
        await notes.send(event)  # queued out of order, as events may arrive
    await register_sender(db, ME)
    await register_sender(db, OTHER)
    with pytest.raises(asyncio.CancelledError):  # ME holds o1's first email and dies
        await send_due(db, Dying(), FAST, me=ME, lease=HOUR, limit=1)
    assert await claimed_by(notes) == {"o1/order_placed": ME, "o1/order_approved": None,
                                       "o1/shipment_dispatched": None, "o2/order_placed": None}
    # The other sender mails o2, and nothing of o1 while its first email is held.
    assert (await send_all(db, mailer(sink), me=OTHER)).sent == 1
    smtp = mailer(sink)
    failing = {"o1/order_approved"}

    class FailsOnce:
        async def send(self, mail: OutgoingMail) -> None:
            if f"{mail.order_id}/{mail.kind}" in failing:
                failing.clear()
                raise ConnectionError("the mail server hung up")
            await smtp.send(mail)

    await register_sender(db, ME)  # ME restarts; the approval fails once and is retried

    async def all_sent() -> bool:  # rounds until the retry's delay (FAST: 50 ms) has passed
        await send_all(db, FailsOnce())
        return {r["status"] for r in await notes.rows()} == {"sent"}
    await wait_for(all_sent)
    assert not failing  # it did fail once
    assert order_kinds(sink.messages(), "o1") == ["order_placed", "order_approved",
                                                  "shipment_dispatched"]
    await smtp.close_connection()


async def test_an_email_waits_for_the_one_it_follows_to_exist(db: Database,
                                                              sink: MailSink) -> None:
    """After a crash the "placed" event is redelivered 30 s later, while "approved" came at
    once: the approval email waits for the placed one rather than overtake it."""
    sink.start()
    notes = Notifications(db)
    await notes.send(approved("o1"))
    assert (await send_all(db, mailer(sink))).sent == 0  # o1/order_placed does not exist
    await notes.send(placed("o1"))  # the redelivery
    assert (await send_all(db, mailer(sink))).sent == 2
    assert order_kinds(sink.messages(), "o1") == ["order_placed", "order_approved"]
    # An event that never comes holds nothing for ever: it is sent after order_wait.
    await notes.send(shipment("o2", "DELIVERED"))
    await notes.send(placed("o2"))
    assert (await send_all(db, mailer(sink))).sent == 1
    assert (await send_all(db, mailer(sink), now=utc_now() + timedelta(seconds=121))).sent == 1
    assert order_kinds(sink.messages(), "o2") == ["order_placed", "shipment_delivered"]


async def test_the_sink_keeps_its_messages_across_restarts(db: Database,
                                                          sink: MailSink) -> None:
    sink.start()
    notes = Notifications(db)
    await notes.send(placed("o1"))
    assert (await send_due(db, mailer(sink), FAST, me=ME)).sent == 1
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
    assert (await send_due(db, kept, FAST, me=ME)).sent == 3
    connection = kept._smtp
    assert connection is not None and connection.is_connected  # kept for the next email
    await notes.send(placed("o4"))
    assert (await send_due(db, kept, FAST, me=ME)).sent == 1
    assert kept._smtp is connection  # the same one, not a connect per email
    assert sink.stop() == 0  # the kept connection goes stale
    sink.start()
    await notes.send(placed("o5"))
    assert (await send_due(db, kept, FAST, me=ME)).sent == 1  # retried once, fresh connection
    assert kept._smtp is not connection
    await kept.close_connection()
    assert sorted(m["notification"] for m in sink.messages()) == [
        f"o{i}/order_placed" for i in range(1, 6)]


async def test_a_database_outage_after_the_send_does_not_mail_it_again(
        db: Database, sink: MailSink, monkeypatch: pytest.MonkeyPatch) -> None:
    """The email went out, then recording it fails while PostgreSQL restarts: the sender
    waits the database out and records it, instead of releasing the claim (which mailed it
    a second time once the database was back)."""
    sink.start()
    notes = Notifications(db)
    await notes.send(placed("o1"))
    real_mark = SenderRepository.mark_sent
    refused = 0

    async def mark_while_restarting(self: SenderRepository, *args: Any) -> bool | None:
        nonlocal refused
        if refused < 3:  # what asyncpg raises while nothing listens on the port
            refused += 1
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
        return await real_mark(self, *args)

    monkeypatch.setattr(SenderRepository, "mark_sent", mark_while_restarting)
    done = await send_due(db, mailer(sink), FAST, me=ME)
    assert (done.claimed, done.sent, refused) == (1, 1, 3)
    monkeypatch.undo()
    assert [r["status"] for r in await notes.rows()] == ["sent"]
    assert (await send_due(db, mailer(sink), FAST, me=ME, stale_after=timedelta(0))).claimed == 0
    assert [m["notification"] for m in sink.messages()] == ["o1/order_placed"]


async def test_a_bug_while_recording_a_send_is_not_retried(
        db: Database, sink: MailSink, monkeypatch: pytest.MonkeyPatch) -> None:
    sink.start()
    await Notifications(db).send(placed("o1"))

    async def broken(self: SenderRepository, *args: Any) -> None:
        raise ValueError("a bug, not an outage")

    monkeypatch.setattr(SenderRepository, "mark_sent", broken)
    with pytest.raises(ValueError, match="a bug"):
        await send_due(db, mailer(sink), FAST, me=ME)


async def test_a_round_checks_each_claim_in_the_transaction_before_its_send(
        db: Database, database_url: str, sink: MailSink, pg_server: PgServer) -> None:
    """A round of n emails is n + 1 transactions (the claim, then one mark per email that
    also checks the next email's claim), not 2n + 1 (a check of its own before each send):
    the sender was a quarter of the platform's transactions per order. And each is one
    statement sent alone, with no BEGIN and COMMIT round trips around it: n + 1 round trips
    in all, as PostgreSQL's statement log records them. The check still stands right before
    each send (see the paused-sender test above)."""
    sink.start()
    notes = Notifications(db)
    for order in ("o1", "o2", "o3", "o4"):
        await notes.send(placed(order))
    smtp = mailer(sink)
    with pg_server.statements_logged(database_url.rsplit("/", 1)[1]) as logged:
        sender_db = Database(database_url, pool_size=1)
        try:
            pid = (await sender_db.fetch_once("SELECT pg_backend_pid() AS pid"))[0]["pid"]
            sent_before = len(logged(pid))
            done = await send_due(sender_db, smtp, FAST, me=ME)
            sent = [" ".join(s.split(": ", 1)[1].split()) for s in logged(pid)[sent_before:]]
        finally:
            await sender_db.dispose()
    assert (done.claimed, done.sent, done.lost) == (4, 4, 0)
    claim, mark = (" ".join(sql.split()) for sql in (_CLAIM, _MARK_SENT))
    assert sent == [claim] + [mark] * 4, sent  # no BEGIN, no COMMIT, no check of its own
    assert {r["status"] for r in await notes.rows()} == {"sent"}
    assert sorted(m["notification"] for m in sink.messages()) == [
        f"o{i}/order_placed" for i in range(1, 5)]
    await smtp.close_connection()


async def test_the_check_in_a_mark_sees_a_takeover_that_commits_while_the_mark_waits(
        db: Database) -> None:
    """The mark and the next email's claim check are one statement, which reads one
    snapshot. Another sender's takeover claim (this sender was paused past its beat) that
    holds both rows when the mark comes, and commits while the mark waits on it, is still
    seen by the check, as it was by a SELECT of its own after the UPDATE: the next email is
    not mailed by both. (A plain read in that statement says "still ours" here; its
    FOR SHARE makes it wait for the takeover and read the row again.)"""
    notes = Notifications(db)
    for order in ("o1", "o2"):
        await notes.send(placed(order))
    sender = SenderRepository(db)
    first, following = await sender.claim_due(
        utc_now(), 10, HOUR, me=ME, stale_after=timedelta(seconds=10), order_wait=HOUR)
    async with db.engine.connect() as takeover:
        await takeover.execute(text("UPDATE notifications SET claimed_by = :other "
                                    "WHERE id IN (:a, :b)"),
                               {"other": OTHER, "a": first.id, "b": following.id})
        mark = asyncio.create_task(sender.mark_sent(first.id, utc_now(), following.id, ME))

        async def waiting() -> bool:  # a transaction of its own: pg_stat_activity is read anew
            return bool(await db.fetch_once(
                "SELECT 1 FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"))
        await wait_for(waiting)
        await takeover.commit()
    assert await mark is False
    rows = {r["id"]: r for r in await notes.rows()}
    assert (rows[first.id]["status"], rows[first.id]["claimed_by"]) == ("sent", None)
    assert rows[following.id]["claimed_by"] == OTHER


async def test_what_the_sink_reads_is_what_was_written_in_any_script(sink: MailSink) -> None:
    """The compat32 build (ADR 0038) on the wire to a real SMTP server: a non-ASCII subject
    (also a long one, folded) and a UTF-8 body with lines that start with a dot (SMTP's end
    of data unless escaped)."""
    sink.start()
    kept = mailer(sink)
    long_subject = "Ihre Bestellung über " + "Grüntee " * 12 + "ist bestätigt"
    body = "Grüße, Łukasz!\n.\n..leading dots\n€ 37,80 — 注文\n"
    mails = [OutgoingMail(1, "o1", "order_placed", "kim@example.com", "Héllo ✓", body),
             OutgoingMail(2, "o2", "order_placed", "kim@example.com", long_subject, body),
             OutgoingMail(3, "o3", "order_placed", "kim@example.com", "plain ascii", "ok\n")]
    for mail in mails:
        await kept.send(mail)
    await kept.close_connection()
    got = {m["notification"]: m for m in sink.messages()}
    for mail in mails:
        seen = got[f"{mail.order_id}/order_placed"]
        assert (seen["subject"], seen["body"], seen["to"]) == (mail.subject, mail.body,
                                                               [mail.to]), seen
