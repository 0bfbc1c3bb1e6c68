"""Notifications persistence: the consumers' writes and the failure paths run in a unit of
work (``NotificationsRepository``); the sender's per-email statements each run alone, as their
own transaction (``SenderRepository``).

Rules that keep "one email per (order, kind)" true with several instances:
1. A notification is only ever INSERTed by the consumers, with ON CONFLICT DO NOTHING on
   UNIQUE(order_id, kind): a redelivered or re-published event adds nothing.
2. The sender claims due rows with FOR UPDATE SKIP LOCKED and, in the same
   statement, names itself in ``claimed_by`` and pushes their ``next_attempt_at`` ahead by
   a lease, so no other instance takes them while the SMTP call runs (no lock is held during
   it). A claim is only as good as its holder's heartbeat (``senders``): the claims of an
   instance whose beat is stale are taken over at once, and an instance releases its own at
   its start (a restart under the same id) and at a clean stop. A claim whose holder has no
   beat at all lasts its lease. Right before each send the holder checks the
   claim is still its own, so an instance that was paused past its beat cannot send what
   another one took over.
3. An email is claimed only when no email of the same order earlier in the sequence is still
   queued (unsent, retrying, or claimed by anyone), and the email it follows exists (its
   event may come late: redelivered after a crash) or it has waited ``order_wait`` for it:
   a customer reads them in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from chassis.db import Database, Tx, driver_fetch
from sqlalchemy import select, text, update

from notifications.adapters.orm import notifications
from notifications.domain.model import (
    FAILED,
    FOLLOWS,
    QUEUED,
    SENT,
    SEQUENCE,
    UNKNOWN_RECIPIENT,
    Mail,
    Notification,
)

# The statements of every order event (email_for, enqueue) are fixed SQL on
# the unit of work's asyncpg connection (chassis.db.driver_fetch, ADR 0046), past SQLAlchemy's
# ~0.1 ms of client CPU a statement. Those of every email the sender mails (claim_due,
# mark_sent with the next email's claim check, still_mine) and its heartbeat are ONE statement
# each, so they run alone on the driver with no BEGIN and COMMIT around them
# (Database.fetch_once): PostgreSQL makes a single statement atomic by itself. The sender's
# start and stop (two statements), the failure paths and the API's listing stay on Core.

# Claim due rows (or rows whose holder's heartbeat is stale), first of their order only, take
# a lease on them, and resolve a missing recipient from what the order events taught us. A
# row whose recipient is still unknown is not counted as an attempt. Only a beat that is there
# and old voids a claim: a holder without a row (one that never registered) keeps its claim
# until the lease ends; counting it as stale let three concurrent senders take each other's
# fresh claims and mail one email twice.
_CLAIM = """
WITH due AS (
    SELECT n.id FROM notifications n
    WHERE n.status = 'queued'
      AND (n.next_attempt_at <= $1
           OR EXISTS (
               SELECT 1 FROM senders s
               WHERE s.instance_id = n.claimed_by AND s.beat_at <= $2))
      AND NOT EXISTS (
          SELECT 1 FROM notifications e
          WHERE e.order_id = n.order_id AND e.status = 'queued'
            AND (e.sequence, e.id) < (n.sequence, n.id))
      AND (n.follows IS NULL OR n.created_at <= $3 OR EXISTS (
          SELECT 1 FROM notifications p WHERE p.order_id = n.order_id AND p.kind = n.follows))
    ORDER BY n.next_attempt_at, n.id
    LIMIT $4
    FOR UPDATE OF n SKIP LOCKED
), resolved AS (
    SELECT due.id, COALESCE(n.recipient, c.email) AS recipient
    FROM due JOIN notifications n ON n.id = due.id
    LEFT JOIN customers c ON c.order_id = n.order_id
)
UPDATE notifications n
SET recipient = r.recipient,
    attempts = n.attempts + CASE WHEN r.recipient IS NULL THEN 0 ELSE 1 END,
    next_attempt_at = $5,
    claimed_by = CASE WHEN r.recipient IS NULL THEN NULL ELSE $6 END,
    status = CASE WHEN r.recipient IS NULL THEN 'failed' ELSE n.status END,
    last_error = CASE WHEN r.recipient IS NULL THEN $7 ELSE n.last_error END
FROM resolved r
WHERE n.id = r.id
RETURNING n.id, n.order_id, n.kind, n.recipient, n.subject, n.body, n.status, n.attempts
"""
# A sender at its start: any claim under its id is a dead predecessor's (the same instance
# restarted), so its emails are due again now rather than when the lease ends. At a clean
# stop: what a round cut short still held.
_RELEASE_OWN = text("UPDATE notifications SET claimed_by = NULL, next_attempt_at = :now "
                    "WHERE status = 'queued' AND claimed_by = :me")
_BEAT = ("INSERT INTO senders (instance_id, started_at, beat_at) VALUES ($1, $2, $2) "
         "ON CONFLICT (instance_id) DO UPDATE SET beat_at = EXCLUDED.beat_at")
_REGISTER = text("INSERT INTO senders (instance_id, started_at, beat_at) "
                 "VALUES (:me, :now, :now) ON CONFLICT (instance_id) DO UPDATE "
                 "SET started_at = EXCLUDED.started_at, beat_at = EXCLUDED.beat_at")
_RETIRE = text("DELETE FROM senders WHERE instance_id = :me")
_STILL_MINE = ("SELECT 1 FROM notifications WHERE id = $1 AND status = 'queued' "
               "AND claimed_by = $2")
# The mark of an email the mail server took, whoever holds its claim by then (a sender paused
# past its beat still mails the one it was in the middle of: it is out, so it is sent), and, in
# the same statement, the check that the claim on the next email ($4; NULL: none) is still
# ours, right before that send (rule 2). All of one statement reads one snapshot, taken when
# it starts. That the check cannot see the mark's own change does not matter: it reads
# another row. What would matter is a plain read missing another sender's takeover claim that
# commits while this statement runs (the UPDATE waiting on the row lock that claim holds),
# which the SELECT after the UPDATE, in the transaction this replaced, saw: the next email
# would then be mailed by both. FOR SHARE closes that: it waits for such a claim to end, then
# re-reads the row's newest version (READ COMMITTED's recheck), and while held it makes the
# others' claims (SKIP LOCKED) pass the row by. Should two marks ever wait on each other (two
# senders, both paused past their beats, each holding the other's next email), PostgreSQL
# fails one with a deadlock (40P01), which _record_sent retries as it does an outage.
_MARK_SENT = """
WITH marked AS (
    UPDATE notifications SET status = $2, sent_at = $3, last_error = NULL, claimed_by = NULL
    WHERE id = $1
)
SELECT EXISTS (
    SELECT 1 FROM notifications
    WHERE id = $4 AND status = 'queued' AND claimed_by = $5
    FOR SHARE) AS mine
"""

_EMAIL_FOR = "SELECT email FROM customers WHERE order_id = $1"
_ENQUEUE = ("INSERT INTO notifications (order_id, kind, recipient, subject, body, status, "
            "sequence, follows) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "ON CONFLICT (order_id, kind) DO NOTHING RETURNING id")
# An order event that names the customer queues its email and learns the customer in one
# round trip (ADR 0052): the customers row is for the shipment's emails, read later.
_LEARN_AND_ENQUEUE = ("WITH learnt AS (INSERT INTO customers (order_id, customer_id, email) "
                      "VALUES ($1, $9, $3) ON CONFLICT (order_id) DO NOTHING) " + _ENQUEUE)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A notification the sender holds (by lease) for one attempt."""

    id: int
    order_id: str
    kind: str
    recipient: str | None
    subject: str
    body: str
    status: str
    attempts: int


class NotificationsRepository:
    def __init__(self, session: Tx) -> None:
        self.session = session

    # -- written by the consumers ---------------------------------------------------------

    async def email_for(self, order_id: str) -> str | None:
        rows = await driver_fetch(self.session, _EMAIL_FOR, order_id)
        return rows[0]["email"] if rows else None

    async def enqueue(self, order_id: str, kind: str, recipient: str | None,
                      mail: Mail, *, customer_id: str | None = None) -> bool:
        """Queue the notification unless this (order, kind) exists; True if it is new. With
        ``customer_id``, the recipient is learnt as the order's customer too (the first
        email learnt for an order stays), in the same statement."""
        args = (order_id, kind, recipient, mail.subject, mail.body, QUEUED, SEQUENCE[kind],
                FOLLOWS.get(kind))
        if customer_id is not None and recipient is not None:
            rows = await driver_fetch(self.session, _LEARN_AND_ENQUEUE, *args, customer_id)
        else:
            rows = await driver_fetch(self.session, _ENQUEUE, *args)
        return bool(rows)

    # -- the sender's failure paths ---------------------------------------------------------

    async def retry_later(self, notification_id: int, at: datetime, error: str) -> None:
        await self.session.execute(
            update(notifications)
            .where(notifications.c.id == notification_id, notifications.c.status == QUEUED)
            .values(next_attempt_at=at, last_error=error, claimed_by=None))

    async def give_up(self, notification_id: int, error: str) -> None:
        await self.session.execute(
            update(notifications)
            .where(notifications.c.id == notification_id, notifications.c.status == QUEUED)
            .values(status=FAILED, last_error=error, claimed_by=None))

    # -- the senders' heartbeats -----------------------------------------------------------

    async def register_sender(self, me: str, now: datetime) -> int:
        """Beat for ``me`` and release the claims a dead predecessor left under its id;
        how many were released."""
        await self.session.execute(_REGISTER, {"me": me, "now": now})
        released = await self.session.execute(_RELEASE_OWN, {"me": me, "now": now})
        return int(released.rowcount)  # type: ignore[attr-defined]

    async def retire_sender(self, me: str, now: datetime) -> int:
        """A clean stop: what a round cut short at shutdown still held is due again now, and
        the beat goes; how many claims were released."""
        released = await self.session.execute(_RELEASE_OWN, {"me": me, "now": now})
        await self.session.execute(_RETIRE, {"me": me})
        return int(released.rowcount)  # type: ignore[attr-defined]

    # -- read by the API ------------------------------------------------------------------

    async def listing(self, *, order_id: str | None, limit: int) -> list[Notification]:
        stmt = select(notifications).order_by(notifications.c.id.desc()).limit(limit)
        if order_id is not None:
            stmt = stmt.where(notifications.c.order_id == order_id)
        rows = (await self.session.execute(stmt)).all()
        return [Notification(id=r.id, order_id=r.order_id, kind=r.kind, recipient=r.recipient,
                             subject=r.subject, body=r.body, status=r.status,
                             attempts=r.attempts, created_at=r.created_at, sent_at=r.sent_at,
                             last_error=r.last_error) for r in rows]


class SenderRepository:
    """The sender's statements on every email (and its heartbeat): each is one statement and
    runs as its own transaction, so a round of n emails is n + 1 round trips (the claim, then
    a mark per email that also checks the next email's claim), with no BEGIN or COMMIT."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim_due(self, now: datetime, limit: int, lease: timedelta, *, me: str,
                        stale_after: timedelta, order_wait: timedelta) -> list[Claimed]:
        # One statement: its row locks (FOR UPDATE SKIP LOCKED) last until it ends, as they
        # lasted until the COMMIT of the transaction it was alone in.
        rows = await self.db.fetch_once(_CLAIM, now, now - stale_after, now - order_wait,
                                        limit, now + lease, me, UNKNOWN_RECIPIENT)
        return [Claimed(*row) for row in rows]

    async def still_mine(self, notification_id: int, me: str) -> bool:
        return bool(await self.db.fetch_once(_STILL_MINE, notification_id, me))

    async def mark_sent(self, notification_id: int, now: datetime,
                        check_next: int | None = None, me: str | None = None) -> bool | None:
        """Mark a mailed notification sent; whether the claim on ``check_next`` is still
        ``me``'s (None when not asked)."""
        [row] = await self.db.fetch_once(_MARK_SENT, notification_id, SENT, now, check_next, me)
        return None if check_next is None else bool(row["mine"])

    async def beat(self, me: str, now: datetime) -> None:
        await self.db.execute_once(_BEAT, me, now)
