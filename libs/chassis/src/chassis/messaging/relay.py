"""The outbox relay: moves committed outbox rows to the broker, at least once.

Two paths (ADR 0042):

- **At commit.** In a service, the messaging runtime hands this relay every message its
  database's sessions commit (``chassis.messaging.outbox.hand_off_after_commit``). The relay
  publishes them at once, in the order they committed, and marks them published by their
  message ids, one statement for what was published in the last ``mark_interval`` (1 s,
  ADR 0043). That is one autocommitted UPDATE where the relay's pass was a transaction of
  four statements and the NOTIFY that woke it.
- **The relay's pass.** Woken by LISTEN/NOTIFY (rows staged by a process without a hand-off)
  and every ``poll_interval``, it claims a batch with ``FOR UPDATE SKIP LOCKED`` (so several
  instances share the work without publishing the same row twice at the same time), publishes
  it and marks the rows published in the same transaction. While hand-offs run, a timed pass
  comes every ``left_poll_interval`` (5 s, ADR 0043) and takes only rows unpublished for
  ``grace`` seconds: those a process committed and died before publishing.

When a hand-off's publish fails (the broker is down) or too many wait, the hand-offs stop and
the relay's passes take every row, in id order as before ADR 0042, until a pass finds the
outbox caught up: a message the broker refused does not go out after the ones committed
later.

A crash after publishing and before the mark publishes the message again: JetStream's
duplicate window drops most such repeats and the consumers' inbox makes the rest harmless.
Published rows are kept for ``retention`` so a range can be re-published after a broker loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg
import orjson
import structlog
from opentelemetry import propagate, trace

from chassis.messaging.broker import Outgoing, Publisher
from chassis.messaging.envelope import H_MESSAGE_ID
from chassis.messaging.metrics import MessagingMetrics
from chassis.messaging.outbox import Committed
from chassis.messaging.tables import OUTBOX_CHANNEL

log = structlog.get_logger("chassis.relay")
_tracer = trace.get_tracer("chassis.messaging")

FaultHook = Callable[[str], Awaitable[None]]

_CLAIM = """
SELECT id, subject, headers, payload FROM outbox
WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
"""
# While hand-offs run: only what the committing process has had time to publish itself.
_CLAIM_LEFT = """
SELECT id, subject, headers, payload FROM outbox
WHERE published_at IS NULL AND created_at < now() - make_interval(secs => $2)
ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
"""
_MARK = "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])"
_MARK_HANDED_OFF = ("UPDATE outbox SET published_at = now() "
                    "WHERE message_id = ANY($1::uuid[]) AND published_at IS NULL")
_BACKLOG = ("SELECT count(*), extract(epoch FROM now() - min(created_at)) "
            "FROM outbox WHERE published_at IS NULL")


def _publish_span(subject: str, headers: dict[str, str]) -> trace.Span:
    """A PRODUCER span in the trace captured when the row was written; its context replaces
    the headers' traceparent, so the consumer's span is its child: request → publish →
    consume, one trace across the broker."""
    parent = propagate.extract(headers)
    span = _tracer.start_span(f"publish {subject}", context=parent,
                              kind=trace.SpanKind.PRODUCER,
                              attributes={"messaging.system": "nats",
                                          "messaging.destination.name": subject,
                                          "messaging.message.id": headers.get(H_MESSAGE_ID, "")})
    if span.get_span_context().is_valid:
        propagate.inject(headers, context=trace.set_span_in_context(span, parent))
    return span


async def _no_reset(_conn: asyncpg.Connection) -> None:
    return None


# Hand-offs waiting beyond this (the broker is down) are left to the relay's pass.
HAND_OFF_LIMIT = 10_000


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


class OutboxRelay:
    def __init__(self, database_url: str, publisher: Publisher, *, batch_size: int = 500,
                 poll_interval_s: float = 1.0, retention_s: float = 7 * 86400,
                 metrics: MessagingMetrics | None = None,
                 fault_hook: FaultHook | None = None, gather_s: float = 0.004,
                 grace_s: float = 5.0, mark_interval_s: float = 1.0,
                 left_poll_interval_s: float = 5.0, publish_spans: bool = False) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._publisher = publisher
        self.batch_size = batch_size
        self._poll = poll_interval_s
        self._retention = retention_s
        self._metrics = metrics
        self._fault = fault_hook
        # A PRODUCER span per message (ServiceSettings.trace_publish): off, the consumer's
        # span continues the trace context captured when the row was staged.
        self._publish_spans = publish_spans
        # After a wake-up, wait this long so one pass carries every row committed meanwhile:
        # a pass per NOTIFY would cost a claim, a publish round trip and a mark per row.
        self._gather_s = gather_s
        self._wake = asyncio.Event()
        # Hand-offs (None until ``accept_hand_offs``): committed, not yet published.
        self._handed: deque[Committed] | None = None
        self._handed_arrived = asyncio.Event()
        # Set when a hand-off could not be published: the passes take everything, in id
        # order, until one finds the outbox caught up.
        self._catching_up = False
        self.grace_s = grace_s
        # Marks and, while hand-offs run, timed passes are housekeeping: each is a statement
        # (a mark also a WAL flush) whatever it carries. Every 100 ms and every second they
        # were ~4 of an order's ~23 transactions at 12 orders/s (ADR 0043). A mark later
        # only delays ``published_at``; a timed pass later only delays what a dead process
        # left, which its restart's first pass takes anyway.
        self._mark_interval = mark_interval_s
        self._left_poll = left_poll_interval_s
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None  # LISTEN, while ``run`` runs
        self._last_gauge = 0.0
        self._last_purge = 0.0

    async def _ensure_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            # No reset query on release: the relay leaves no session state behind (every
            # transaction ends in its block), and the reset was a round trip per pass.
            self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=2,
                                                   reset=_no_reset)
        return self._pool

    async def relay_once(self, grace_s: float = 0.0) -> int:
        """Publish one batch (of rows unpublished for at least ``grace_s``); return how many
        rows were published."""
        pool = await self._ensure_pool()
        async with pool.acquire() as conn, conn.transaction():
            rows = await (conn.fetch(_CLAIM_LEFT, self.batch_size, grace_s) if grace_s > 0
                          else conn.fetch(_CLAIM, self.batch_size))
            if not rows:
                return 0
            await self._publish([(r["subject"], orjson.loads(r["headers"]), r["payload"])
                                 for r in rows])
            await conn.execute(_MARK, [r["id"] for r in rows])
        if self._metrics is not None:
            self._metrics.outbox_published.labels("relay").inc(len(rows))
        return len(rows)

    async def _publish(self, messages: list[tuple[str, dict[str, str], bytes]]) -> None:
        spans, outgoing = [], []
        for subject, headers, payload in messages:
            if self._publish_spans:
                spans.append(_publish_span(subject, headers))
            outgoing.append(Outgoing(subject, payload, headers))
        try:
            await self._publisher.publish_batch(outgoing)
        finally:
            for span in spans:
                span.end()
        if self._fault is not None:
            await self._fault("after_publish")

    # -- at commit ---------------------------------------------------------------------------
    def accept_hand_offs(self) -> None:
        """Publish what is handed off (``hand_off``) from now on, in ``run``; timed passes
        then take only rows left unpublished for ``grace_s``."""
        if self._handed is None:
            self._handed = deque()

    def hand_off(self, message: Committed) -> None:
        """A message whose transaction committed in this process. Called inside the commit,
        so it only queues. Beyond ``HAND_OFF_LIMIT`` waiting (the broker is down), the
        message is left to the relay's pass, which reads it from the outbox."""
        if self._handed is None or self._catching_up:
            return
        if len(self._handed) >= HAND_OFF_LIMIT:
            self._catch_up()
            return
        self._handed.append(message)
        self._handed_arrived.set()

    async def _publish_hand_offs(self, stop: asyncio.Event) -> None:
        """Publish what is handed off as it comes; mark it published every
        ``mark_interval`` (one statement for all). At a stop, what was handed off is
        published and marked before returning."""
        handed = self._handed
        assert handed is not None
        unmarked: list[uuid.UUID] = []
        marked_at = time.monotonic()
        while True:
            if not handed:
                if stop.is_set():
                    if unmarked:
                        await self._mark_handed_off(unmarked)
                    break
                self._handed_arrived.clear()
                wait = self._mark_interval - (time.monotonic() - marked_at) if unmarked else None
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(_first_of(self._handed_arrived, stop),
                                           max(wait, 0.0) if wait is not None else None)
            batch = [handed.popleft() for _ in range(min(len(handed), self.batch_size))]
            if batch:
                try:
                    await self._publish([(m.subject, dict(m.headers), m.payload)
                                         for m in batch])
                except Exception as exc:
                    # Still unpublished in the outbox: the relay's passes take them, and what
                    # follows, in order.
                    if self._metrics is not None:
                        self._metrics.publish_errors.inc()
                    log.warning("outbox_hand_off_failed", messages=len(batch),
                                error=f"{type(exc).__name__}: {exc}")
                    self._catch_up()
                else:
                    if not unmarked:  # the interval runs from the first publish it marks
                        marked_at = time.monotonic()
                    unmarked.extend(m.message_id for m in batch)
                    if self._metrics is not None:
                        self._metrics.outbox_published.labels("commit").inc(len(batch))
            if unmarked and (time.monotonic() - marked_at >= self._mark_interval
                             or len(unmarked) >= self.batch_size or stop.is_set()):
                await self._mark_handed_off(unmarked)
                unmarked = []

    def _catch_up(self) -> None:
        """Hand-offs stop; the passes take every unpublished row (woken now) until caught up."""
        self._catching_up = True
        if self._handed is not None:
            self._handed.clear()
        self._wake.set()

    async def _mark_handed_off(self, message_ids: list[uuid.UUID]) -> None:
        try:
            pool = await self._ensure_pool()
            await pool.execute(_MARK_HANDED_OFF, message_ids)
        except Exception as exc:
            # Left unmarked, they are published again by the relay's pass: the broker's
            # duplicate window and the consumers' inboxes drop the repeats.
            log.warning("outbox_mark_failed", messages=len(message_ids),
                        error=f"{type(exc).__name__}: {exc}")

    async def update_gauges(self, force: bool = False) -> None:
        if self._metrics is None or (not force and time.monotonic() - self._last_gauge < 1.0):
            return
        self._last_gauge = time.monotonic()
        pool = await self._ensure_pool()
        count, age = await pool.fetchrow(_BACKLOG)
        self._metrics.outbox_backlog.set(count)
        self._metrics.outbox_oldest_age.set(float(age or 0.0))

    async def purge_published(self) -> int:
        pool = await self._ensure_pool()
        status = await pool.execute(
            "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)",
            self._retention)
        return int(status.split()[-1])

    async def republish_since(self, since: datetime) -> int:
        """Mark rows published since ``since`` unpublished, so the relay sends them again."""
        pool = await self._ensure_pool()
        status = await pool.execute(
            "UPDATE outbox SET published_at = NULL WHERE published_at >= $1", since)
        await pool.execute(f"NOTIFY {OUTBOX_CHANNEL}")
        return int(status.split()[-1])

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set; survives database and broker outages."""
        hand_offs = (asyncio.create_task(self._publish_hand_offs(stop), name="outbox-hand-off")
                     if self._handed is not None else None)
        try:
            await self._run_passes(stop)
        finally:
            if hand_offs is not None:  # before the pool closes: it marks what it published
                with contextlib.suppress(asyncio.TimeoutError, Exception):
                    await asyncio.wait_for(hand_offs, 5)
            await self.close()

    async def _run_passes(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        notified = True  # the first pass takes everything left
        while not stop.is_set():
            try:
                if self._listener is None or self._listener.is_closed():
                    self._listener = await asyncpg.connect(self._dsn)
                    await self._listener.add_listener(OUTBOX_CHANNEL,
                                                      lambda *_: self._wake.set())
                self._wake.clear()
                grace = (self.grace_s if self._handed is not None and not notified
                         and not self._catching_up else 0.0)
                published = await self.relay_once(grace)
                if self._catching_up and not grace and published < self.batch_size:
                    # Caught up: hand-offs again. One more pass for what committed while
                    # this one ran (a row also handed off since goes out twice; the broker's
                    # duplicate window drops the repeat).
                    self._catching_up = False
                    notified = True
                    continue
                await self.update_gauges()
                if time.monotonic() - self._last_purge > 3600:
                    self._last_purge = time.monotonic()
                    await self.purge_published()
                backoff = 0.1
                if published >= self.batch_size:
                    continue  # more is waiting: no need to sleep
                timed = (self._left_poll if self._handed is not None and not self._catching_up
                         else self._poll)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(_first_of(self._wake, stop), timed)
                notified = self._wake.is_set()
                if notified and self._gather_s and not stop.is_set():
                    await asyncio.sleep(self._gather_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._metrics is not None:
                    self._metrics.publish_errors.inc()
                log.warning("outbox_relay_failed", error=f"{type(exc).__name__}: {exc}",
                            retry_in=backoff)
                with contextlib.suppress(Exception):  # the backlog matters most during outages
                    await self.update_gauges()
                await self._close_listener()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 5.0)

    async def _close_listener(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            with contextlib.suppress(Exception):
                await self._listener.close()
        self._listener = None

    async def close(self) -> None:
        await self._close_listener()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
