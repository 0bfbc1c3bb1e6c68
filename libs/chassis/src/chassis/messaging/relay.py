"""The outbox relay: moves committed outbox rows to the broker, at least once.

Woken by LISTEN/NOTIFY (with a polling fallback for lost notifications and for rows written
while it was down), it claims a batch with ``FOR UPDATE SKIP LOCKED`` (so several instances
share the work without publishing the same row twice at the same time), publishes the batch,
and marks the rows published in the same transaction. A crash after publishing and before the
commit publishes the batch again: JetStream's duplicate window drops most such repeats and the
consumers' inbox makes the rest harmless. Published rows are kept for ``retention`` so a range
can be re-published after a broker loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg
import orjson
import structlog
from opentelemetry import propagate, trace

from chassis.messaging.broker import Outgoing, Publisher
from chassis.messaging.envelope import H_MESSAGE_ID
from chassis.messaging.metrics import MessagingMetrics
from chassis.messaging.tables import OUTBOX_CHANNEL

log = structlog.get_logger("chassis.relay")
_tracer = trace.get_tracer("chassis.messaging")

FaultHook = Callable[[str], Awaitable[None]]

_CLAIM = """
SELECT id, subject, headers, payload FROM outbox
WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
"""
_MARK = "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])"
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


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


class OutboxRelay:
    def __init__(self, database_url: str, publisher: Publisher, *, batch_size: int = 500,
                 poll_interval_s: float = 1.0, retention_s: float = 7 * 86400,
                 metrics: MessagingMetrics | None = None,
                 fault_hook: FaultHook | None = None, gather_s: float = 0.004) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._publisher = publisher
        self.batch_size = batch_size
        self._poll = poll_interval_s
        self._retention = retention_s
        self._metrics = metrics
        self._fault = fault_hook
        # After a wake-up, wait this long so one pass carries every row committed meanwhile:
        # a pass per NOTIFY would cost a claim, a publish round trip and a mark per row.
        self._gather_s = gather_s
        self._wake = asyncio.Event()
        self._pool: asyncpg.Pool | None = None
        self._last_gauge = 0.0
        self._last_purge = 0.0

    async def _ensure_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            # No reset query on release: the relay leaves no session state behind (every
            # transaction ends in its block), and the reset was a round trip per pass.
            self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=2,
                                                   reset=_no_reset)
        return self._pool

    async def relay_once(self) -> int:
        """Publish one batch; return how many rows were published."""
        pool = await self._ensure_pool()
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, self.batch_size)
            if not rows:
                return 0
            outgoing, spans = [], []
            for r in rows:
                headers = orjson.loads(r["headers"])
                spans.append(_publish_span(r["subject"], headers))
                outgoing.append(Outgoing(r["subject"], r["payload"], headers))
            try:
                await self._publisher.publish_batch(outgoing)
            finally:
                for span in spans:
                    span.end()
            if self._fault is not None:
                await self._fault("after_publish")
            await conn.execute(_MARK, [r["id"] for r in rows])
        if self._metrics is not None:
            self._metrics.outbox_published.inc(len(rows))
        return len(rows)

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
        listener: asyncpg.Connection | None = None
        backoff = 0.1
        while not stop.is_set():
            try:
                if listener is None or listener.is_closed():
                    listener = await asyncpg.connect(self._dsn)
                    await listener.add_listener(OUTBOX_CHANNEL, lambda *_: self._wake.set())
                self._wake.clear()
                published = await self.relay_once()
                await self.update_gauges()
                if time.monotonic() - self._last_purge > 3600:
                    self._last_purge = time.monotonic()
                    await self.purge_published()
                backoff = 0.1
                if published >= self.batch_size:
                    continue  # more is waiting: no need to sleep
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wait(stop), self._poll)
                if self._gather_s and not stop.is_set():
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
                if listener is not None and not listener.is_closed():
                    with contextlib.suppress(Exception):
                        await listener.close()
                listener = None
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 5.0)
        await self.close(listener)

    async def _wait(self, stop: asyncio.Event) -> None:
        stopper = asyncio.ensure_future(stop.wait())
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({stopper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            waker.cancel()

    async def close(self, listener: asyncpg.Connection | None = None) -> None:
        if listener is not None and not listener.is_closed():
            with contextlib.suppress(Exception):
                await listener.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
