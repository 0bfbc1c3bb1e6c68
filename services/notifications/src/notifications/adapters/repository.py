"""Notifications persistence: one session = one unit of work.

Rules that keep "one email per (order, kind)" true with several instances:
1. A notification is only ever INSERTed by the consumers, with ON CONFLICT DO NOTHING on
   UNIQUE(order_id, kind): a redelivered or re-published event adds nothing.
2. The sender claims due rows with FOR UPDATE SKIP LOCKED and, in the same short
   transaction, pushes their ``next_attempt_at`` ahead by a lease, so no other instance takes
   them while the SMTP call runs (no lock is held during it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from notifications.adapters.orm import customers, notifications
from notifications.domain.model import FAILED, QUEUED, SENT, UNKNOWN_RECIPIENT, Mail, Notification

# Claim due rows, take a lease on them, and resolve a missing recipient from what the order
# events taught us. A row whose recipient is still unknown is not counted as an attempt.
_CLAIM = text("""
WITH due AS (
    SELECT id FROM notifications
    WHERE status = 'queued' AND next_attempt_at <= :now
    ORDER BY next_attempt_at, id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), resolved AS (
    SELECT due.id, COALESCE(n.recipient, c.email) AS recipient
    FROM due JOIN notifications n ON n.id = due.id
    LEFT JOIN customers c ON c.order_id = n.order_id
)
UPDATE notifications n
SET recipient = r.recipient,
    attempts = n.attempts + CASE WHEN r.recipient IS NULL THEN 0 ELSE 1 END,
    next_attempt_at = :lease_until,
    status = CASE WHEN r.recipient IS NULL THEN 'failed' ELSE n.status END,
    last_error = CASE WHEN r.recipient IS NULL THEN :unknown ELSE n.last_error END
FROM resolved r
WHERE n.id = r.id
RETURNING n.id, n.order_id, n.kind, n.recipient, n.subject, n.body, n.status, n.attempts
""")


# The consumers' writes, built once: SQLAlchemy compiled an insert ... ON CONFLICT afresh on
# every execution, which cost more CPU than the database work.
_LEARN = text("INSERT INTO customers (order_id, customer_id, email) "
              "VALUES (:order_id, :customer_id, :email) ON CONFLICT (order_id) DO NOTHING")
_ENQUEUE = text("INSERT INTO notifications (order_id, kind, recipient, subject, body, status) "
                "VALUES (:order_id, :kind, :recipient, :subject, :body, :status) "
                "ON CONFLICT (order_id, kind) DO NOTHING RETURNING id")
_MARK_SENT = text("UPDATE notifications SET status = :sent, sent_at = :now, last_error = NULL "
                  "WHERE id = :id")


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
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- written by the consumers ---------------------------------------------------------

    async def learn_customer(self, order_id: str, customer_id: str, email: str) -> None:
        """Remember who an order belongs to; the first email learnt for an order stays."""
        await self.session.execute(
            _LEARN, {"order_id": order_id, "customer_id": customer_id, "email": email})

    async def email_for(self, order_id: str) -> str | None:
        return (await self.session.execute(
            select(customers.c.email).where(customers.c.order_id == order_id))).scalar()

    async def enqueue(self, order_id: str, kind: str, recipient: str | None,
                      mail: Mail) -> bool:
        """Queue the notification unless this (order, kind) exists; True if it is new."""
        row = (await self.session.execute(_ENQUEUE, {
            "order_id": order_id, "kind": kind, "recipient": recipient,
            "subject": mail.subject, "body": mail.body, "status": QUEUED})).first()
        return row is not None

    # -- used by the sender ---------------------------------------------------------------

    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[Claimed]:
        rows = (await self.session.execute(_CLAIM, {
            "now": now, "limit": limit, "lease_until": now + lease,
            "unknown": UNKNOWN_RECIPIENT})).all()
        return [Claimed(*row) for row in rows]

    async def mark_sent(self, notification_id: int, now: datetime) -> None:
        await self.session.execute(_MARK_SENT, {"sent": SENT, "now": now, "id": notification_id})

    async def retry_later(self, notification_id: int, at: datetime, error: str) -> None:
        await self.session.execute(
            update(notifications)
            .where(notifications.c.id == notification_id, notifications.c.status == QUEUED)
            .values(next_attempt_at=at, last_error=error))

    async def give_up(self, notification_id: int, error: str) -> None:
        await self.session.execute(
            update(notifications)
            .where(notifications.c.id == notification_id, notifications.c.status == QUEUED)
            .values(status=FAILED, last_error=error))

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
