"""Inbox retention: forget handled message ids once no copy of them can come back.

Every consumed message leaves an inbox row (about 19 per order placed), and nothing else
ever deletes them. A row only matters while a copy of its message can still arrive:

- JetStream redelivers within minutes (``ack_wait`` times ``max_deliver``);
- the relay re-publishes a range of the outbox, which keeps published rows 7 days;
- a stream is kept 7 days (a consumer reset re-reads it);
- an operator replays a dead letter to every consumer of its subject, and the dead-letter
  stream keeps messages 30 days. The consumers that had handled it must still skip it.

So rows are kept 35 days, five more than the longest of these.

Message ids are UUIDv7, time-ordered, so the old rows of a consumer are a range of the inbox's
primary key ``(consumer, message_id)``: the purge walks that index, needs no extra index (which
every message would pay for on insert), and deletes in small batches so it never holds many
locks. ``handled_at`` is checked too: a message handled late (a replay of an old message) is
kept for the full retention after it was handled.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy import text

from chassis.clock import utc_now
from chassis.db import Database, Tx
from chassis.messaging.streams import DEAD_LETTER_MAX_AGE_S

log = structlog.get_logger("chassis.inbox")

INBOX_RETENTION = timedelta(seconds=DEAD_LETTER_MAX_AGE_S) + timedelta(days=5)
INBOX_PURGE_INTERVAL_S = 3600.0

_PURGE_BATCH = text(
    "DELETE FROM inbox WHERE consumer = :consumer AND message_id IN ("
    " SELECT message_id FROM inbox WHERE consumer = :consumer AND message_id < :below"
    " AND handled_at < :cutoff ORDER BY message_id LIMIT :batch)")


def uuid7_floor(at: datetime) -> uuid.UUID:
    """The smallest UUIDv7 of ``at``'s millisecond: every id made earlier sorts below it."""
    return uuid.UUID(int=int(at.timestamp() * 1000) << 80)


async def purge_inbox(db: Database, consumers: Sequence[str], *,
                      retention: timedelta = INBOX_RETENTION, now: datetime | None = None,
                      batch: int = 5000) -> int:
    """Delete the inbox rows of ``consumers`` older than ``retention``; return how many."""
    cutoff = (now or utc_now()) - retention
    below = uuid7_floor(cutoff)
    purged = 0
    for consumer in consumers:
        while True:
            async with db.engine.begin() as conn:
                result = await conn.execute(_PURGE_BATCH, {
                    "consumer": consumer, "below": below, "cutoff": cutoff, "batch": batch})
            purged += result.rowcount
            if result.rowcount < batch:
                break
    return purged


_FORGET = text("DELETE FROM inbox WHERE consumer = ANY(:names)")


async def forget_consumers(session: Tx, consumers: Sequence[str]) -> None:
    """Forget every message these consumers handled, in the caller's transaction: a read
    model rebuilt from the streams must handle them all again."""
    await session.execute(_FORGET, {"names": list(consumers)})


def inbox_purger(db: Database, consumers: Sequence[str], *,
                 retention: timedelta = INBOX_RETENTION) -> Callable[[], Awaitable[None]]:
    """One purge round for ``chassis.background`` (the app runs it every
    ``Messaging.inbox_purge_interval_s``, the first one interval after start, away from the
    start-up rush)."""
    async def purge() -> None:
        purged = await purge_inbox(db, consumers, retention=retention)
        if purged:
            log.info("inbox_purged", rows=purged, consumers=list(consumers),
                     retention_days=retention / timedelta(days=1))

    return purge


__all__ = ["INBOX_RETENTION", "forget_consumers", "inbox_purger", "purge_inbox", "uuid7_floor"]
