"""Idempotent consumers: the handler and the inbox row commit together; ack after commit.

For each delivery: decode the envelope; in one transaction insert ``(consumer, message_id)``
into the inbox (a conflict means it was handled before: ack and skip) and run the handler;
commit; then ack. A crash before the commit redelivers; a crash after it redelivers a message
the inbox then skips. Failures nak with a growing delay; on the ``max_deliver``-th failure the
message goes to the dead-letter stream with its headers and the error, and is acked. A
malformed message (``PoisonMessage``) goes there on its first failure: retrying it would only
delay the operator's alert and hold a slot. A message type with no handler is retried like a
transient failure: during a rolling upgrade another instance of the newer release may know it.

No message is dropped unseen. A handler that finds a well-formed message about something this
service does not have (a reply for a saga that does not exist) raises ``UnmatchedMessage``:
it is dead-lettered on its first delivery, where an operator can read it and replay it once
the cause is fixed. A handler that acks a message on purpose without effect (a late duplicate
reply) calls ``dropped(reason)``: the message is logged and counted, not dead-lettered. Both
count in ``consumer_messages_dropped_total{consumer, reason}``, with malformed and exhausted
messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy
from nats.js.errors import NotFoundError
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from chassis.db import Database, Tx, driver_execute_first, driver_fetch
from chassis.messaging import forwarding
from chassis.messaging.broker import Delivery, JetStreamDelivery, Outgoing, Publisher
from chassis.messaging.envelope import (
    H_CORRELATION,
    H_MESSAGE_ID,
    H_NATS_MSG_ID,
    H_TYPE,
    Envelope,
    PoisonMessage,
)
from chassis.messaging.metrics import MessagingMetrics
from chassis.messaging.streams import DEAD_LETTER_PREFIX

log = structlog.get_logger("chassis.consumer")
tracer = trace.get_tracer("chassis.messaging")

Handler = Callable[[Tx, Envelope], Awaitable[None]]

H_DLQ_CONSUMER = "Mercato-Dlq-Consumer"
H_DLQ_SUBJECT = "Mercato-Dlq-Subject"
H_DLQ_ERROR = "Mercato-Dlq-Error"
H_DLQ_DELIVERIES = "Mercato-Dlq-Deliveries"
H_DLQ_STREAM_SEQ = "Mercato-Dlq-Stream-Seq"

# On asyncpg directly (chassis.db.driver_fetch, ADR 0045): every delivery runs it.
_INBOX_MANY = (
    "INSERT INTO inbox (consumer, message_id, message_type) "
    "SELECT $1, m, t FROM unnest($2::uuid[], $3::text[]) AS x(m, t) "
    "ON CONFLICT DO NOTHING RETURNING message_id")
# One message's claim: its row count is its answer, so it goes out with the transaction's
# BEGIN in one round trip (chassis.db.driver_execute_first, ADR 0049).
_INBOX_ONE = ("INSERT INTO inbox (consumer, message_id, message_type) VALUES ($1, $2, $3) "
              "ON CONFLICT DO NOTHING")


@dataclass
class ConsumerSpec:
    """A durable consumer: its name, what it reads, and one handler per message type."""

    name: str
    stream: str
    subjects: list[str]
    handlers: Mapping[str, Handler]
    max_deliver: int = 5
    backoff_s: tuple[float, ...] = (0.2, 1.0, 5.0, 15.0)
    ack_wait_s: float = 30.0
    batch: int = 64
    # After a batch that did not fill, wait as long as handling it took (at most this long)
    # before the next fetch, so the next one carries what arrived meanwhile: each fetch,
    # inbox insert and commit is then shared by more messages. A busy machine (slow batches)
    # batches more; a quiet one adds a few milliseconds. The first message after a quiet
    # spell is never held.
    linger_s: float = 0.02
    deliver_all: bool = True
    # An orchestrator's consumer: an event its receiver forwarded the next command with
    # (``chassis.messaging.forwarding``) is acked unread, with no transaction: the saga
    # awaits the forwarded command's answer instead.
    skip_forwarded: bool = False
    # The advisory lock (``chassis.db.advisory_xact_lock``'s space and key) a message type's
    # handler takes first, read from the message: taken with the inbox claim, in its round
    # trip, and the handler's own call then sends nothing (ADR 0055). None (a key missing
    # from a malformed message): the handler takes it, or rejects the message, itself.
    locks: Mapping[str, Callable[[Envelope], tuple[int, str] | None]] = field(
        default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)


def lock_on(space: int, key_field: str) -> Callable[[Envelope], tuple[int, str] | None]:
    """A ``ConsumerSpec.locks`` entry: the advisory lock (``space``, the payload's
    ``key_field``), or None when the payload has no usable key there."""
    def key_of(envelope: Envelope) -> tuple[int, str] | None:
        value = envelope.payload.get(key_field)
        return (space, value) if isinstance(value, str) and value and "\x00" not in value \
            else None
    return key_of


class UnknownMessageType(LookupError):
    """No handler here for the message's type (or version): retried, then dead-lettered."""


class UnmatchedMessage(LookupError):
    """Raised by a handler: the message is well-formed but names something this service does
    not have (a saga, a shipment), so no retry can help. It is dead-lettered on its first
    delivery, with ``reason`` (a short slug, the metric label) and the message as its error.
    The handler's transaction rolls back: nothing of it is written."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Drop:
    reason: str
    detail: str
    expected: bool


# The drops the running handler declared (set around each handler call by the consumer).
_drops: ContextVar[list[Drop] | None] = ContextVar("mercato_consumer_drops", default=None)


def dropped(reason: str, detail: str = "", *, expected: bool = True) -> None:
    """Called by a handler that acks its message on purpose without effect: the consumer
    logs it (info when ``expected`` -- a normal repeat --, else warning) and counts it under
    ``reason`` once the transaction committed. Outside a consumer it does nothing."""
    declared = _drops.get()
    if declared is not None:
        declared.append(Drop(reason, detail, expected))


class Outcome:
    HANDLED, DUPLICATE, RETRY, DEAD_LETTERED = "handled", "duplicate", "retry", "dead_lettered"
    # Acked on purpose without effect (see ``dropped``).
    DROPPED = "dropped"
    # Acked unread: a forwarded step's success, for an orchestrator (``skip_forwarded``).
    FORWARDED = "forwarded"


class InboxConsumer:
    def __init__(self, spec: ConsumerSpec, db: Database, dead_letters: Publisher,
                 metrics: MessagingMetrics | None = None, *,
                 may_send: Iterable[str] | None = None) -> None:
        self.spec = spec
        # The command subjects a forward may name (the service's Messaging.sends; None: any).
        self._may_send = tuple(may_send) if may_send is not None else None
        self._db = db
        self._dead_letters = dead_letters
        self._metrics = metrics
        if metrics is not None:
            metrics.declare_consumer(spec.name)

    async def process(self, delivery: Delivery) -> str:
        """Handle one delivery end to end (ack/nak/dead-letter); return the outcome."""
        started = time.perf_counter()
        try:
            envelope, handler = self._decode(delivery)
            if self._skipped(envelope):
                await delivery.ack()
                self._observe([delivery], [Outcome.FORWARDED], time.perf_counter() - started)
                return Outcome.FORWARDED
            outcome, drops = await self._handle_one(envelope, handler)
        except Exception as exc:
            outcome = await self._failed(delivery, exc)
        else:
            await delivery.ack()
            self._report_drops(envelope, drops)
        self._observe([delivery], [outcome], time.perf_counter() - started)
        return outcome

    async def process_batch(self, deliveries: list[Delivery]) -> list[str]:
        """Handle a fetched batch in one transaction: one inbox insert, one commit.

        Committing per message caps a consumer at a few hundred messages a second; a batch
        shares the commit. If any handler fails, the batch rolls back and each message is
        handled on its own, so only the failing one is retried or dead-lettered.
        """
        if len(deliveries) == 1:
            return [await self.process(deliveries[0])]
        started = time.perf_counter()
        outcomes: dict[int, str] = {}
        ready: list[tuple[int, Delivery, Envelope, Handler]] = []
        for i, delivery in enumerate(deliveries):
            try:
                envelope, handler = self._decode(delivery)
            except Exception as exc:
                outcomes[i] = await self._failed(delivery, exc)
                continue
            if self._skipped(envelope):
                await delivery.ack()
                outcomes[i] = Outcome.FORWARDED
                continue
            ready.append((i, delivery, envelope, handler))
        # Handlers lock rows keyed by the correlation id (a saga, an order): two consumers
        # whose batches held the same two sagas in opposite orders deadlocked. Handled in
        # correlation order (stable, so one saga's messages keep their order), every batch
        # takes those locks in the same order.
        ready.sort(key=lambda r: r[2].correlation_id or "")
        dropped_here: list[tuple[Envelope, list[Drop]]] = []
        if ready:
            try:
                async with self._db.unit_of_work() as uow:
                    fresh = await self._claim_inbox(uow.session, [e for _, _, e, _ in ready])
                    for i, _, envelope, handler in ready:
                        if envelope.message_id in fresh:
                            fresh.discard(envelope.message_id)  # a repeat in this batch is a dup
                            drops = await self._run_handler(uow.session, envelope, handler)
                            outcomes[i] = Outcome.DROPPED if drops else Outcome.HANDLED
                            if drops:
                                dropped_here.append((envelope, drops))
                        else:
                            outcomes[i] = Outcome.DUPLICATE
                    await uow.commit()
            except Exception as exc:
                # Find the failing message by handling each alone.
                log.info("batch_fell_back_to_single", consumer=self.spec.name,
                         size=len(ready), error=f"{type(exc).__name__}: {exc}"[:300])
                for i, delivery, _, _ in ready:
                    outcomes[i] = await self.process(delivery)
                return [outcomes[i] for i in range(len(deliveries))]
            for _, delivery, _, _ in ready:
                await delivery.ack()
            for envelope, drops in dropped_here:
                self._report_drops(envelope, drops)
        result = [outcomes[i] for i in range(len(deliveries))]
        self._observe(deliveries, result, time.perf_counter() - started)
        return result

    def _decode(self, delivery: Delivery) -> tuple[Envelope, Handler]:
        envelope = Envelope.decode(delivery.subject, delivery.headers, delivery.data)
        handler = self.spec.handlers.get(envelope.message_type)
        if handler is None:
            raise UnknownMessageType(f"no handler for message type {envelope.message_type!r}")
        return envelope, handler

    def _skipped(self, envelope: Envelope) -> bool:
        return self.spec.skip_forwarded and envelope.forwarded is not None

    def _type_label(self, delivery: Delivery) -> str:
        """The message type as a metric label: only the types this consumer handles, so a
        stray header cannot create series without bound."""
        message_type = delivery.headers.get(H_TYPE, "")
        return message_type if message_type in self.spec.handlers else "unknown"

    def _observe(self, deliveries: list[Delivery], outcomes: list[str],
                 seconds: float) -> None:
        if self._metrics is None:
            return
        per_message = seconds / max(len(outcomes), 1)
        for delivery, outcome in zip(deliveries, outcomes, strict=True):
            message_type = self._type_label(delivery)
            self._metrics.handled.labels(self.spec.name, message_type, outcome).inc()
            self._metrics.handler_latency.labels(self.spec.name, message_type).observe(
                per_message)

    async def _claim_inbox(self, session: Tx,
                           envelopes: list[Envelope]) -> set[uuid.UUID]:
        """Insert the batch's inbox rows; return the ids not seen before."""
        if len(envelopes) == 1:
            one = envelopes[0]
            claimed = await driver_execute_first(session, _INBOX_ONE, self.spec.name,
                                                 one.message_id, one.message_type,
                                                 locks=self._locks(one))
            return {one.message_id} if claimed else set()
        result = await driver_fetch(session, _INBOX_MANY, self.spec.name,
                                    [e.message_id for e in envelopes],
                                    [e.message_type for e in envelopes])
        return {row[0] for row in result}

    def _locks(self, envelope: Envelope) -> tuple[tuple[int, str], ...]:
        key_of = self.spec.locks.get(envelope.message_type)
        if key_of is None:
            return ()
        try:
            lock = key_of(envelope)
        except (LookupError, TypeError, ValueError):  # malformed: the handler will say so
            return ()
        return () if lock is None else (lock,)

    async def _run_handler(self, session: Tx, envelope: Envelope,
                           handler: Handler) -> list[Drop]:
        """Run the handler; the drops it declared (empty: it took effect)."""
        token = otel_context.attach(propagate.extract(envelope.trace))
        drops: list[Drop] = []
        declared = _drops.set(drops)
        try:
            with tracer.start_as_current_span(
                    f"consume {envelope.subject}", kind=trace.SpanKind.CONSUMER,
                    attributes={"messaging.system": "nats",
                                "messaging.destination.name": envelope.subject,
                                "messaging.message.id": str(envelope.message_id),
                                "messaging.consumer.group.name": self.spec.name,
                                # The order (saga) id: how a trace is found by its order.
                                "messaging.correlation_id": envelope.correlation_id or ""}):
                with forwarding.receiving(envelope, self._may_send):
                    await handler(session, envelope)
        finally:
            _drops.reset(declared)
            otel_context.detach(token)
        return drops

    async def _handle_one(self, envelope: Envelope,
                          handler: Handler) -> tuple[str, list[Drop]]:
        async with self._db.unit_of_work() as uow:
            if not await self._claim_inbox(uow.session, [envelope]):
                return Outcome.DUPLICATE, []
            drops = await self._run_handler(uow.session, envelope, handler)
            await uow.commit()
        return (Outcome.DROPPED if drops else Outcome.HANDLED), drops

    def _report_drops(self, envelope: Envelope, drops: list[Drop]) -> None:
        """Log and count what a committed handler acked without effect."""
        for drop in drops:
            (log.info if drop.expected else log.warning)(
                "message_dropped", consumer=self.spec.name, subject=envelope.subject,
                type=envelope.message_type, message_id=str(envelope.message_id),
                correlation_id=envelope.correlation_id, reason=drop.reason, detail=drop.detail)
            self._count_drop(drop.reason)

    def _count_drop(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.dropped.labels(self.spec.name, reason).inc()

    async def _failed(self, delivery: Delivery, exc: Exception) -> str:
        error = f"{type(exc).__name__}: {exc}"[:1000]
        attempt = delivery.num_delivered
        if attempt >= self.spec.max_deliver or isinstance(exc, PoisonMessage | UnmatchedMessage):
            headers = {**delivery.headers, H_DLQ_CONSUMER: self.spec.name,
                       H_DLQ_SUBJECT: delivery.subject, H_DLQ_ERROR: error,
                       H_DLQ_DELIVERIES: str(attempt),
                       H_DLQ_STREAM_SEQ: str(delivery.stream_sequence)}
            # A fresh broker id: the dead letter must not be dropped as a duplicate.
            headers[H_NATS_MSG_ID] = f"dlq-{self.spec.name}-{delivery.stream_sequence}"
            await self._dead_letters.publish_batch(
                [Outgoing(f"{DEAD_LETTER_PREFIX}.{self.spec.name}", delivery.data, headers)])
            await delivery.ack()
            reason = (exc.reason if isinstance(exc, UnmatchedMessage) else
                      "malformed" if isinstance(exc, PoisonMessage) else "max_deliver")
            log.error("message_dead_lettered", consumer=self.spec.name,
                      subject=delivery.subject, type=delivery.headers.get(H_TYPE),
                      message_id=delivery.headers.get(H_MESSAGE_ID),
                      correlation_id=delivery.headers.get(H_CORRELATION), reason=reason,
                      deliveries=attempt, error=error)
            if self._metrics is not None:
                self._metrics.dead_letters.labels(self.spec.name).inc()
            self._count_drop(reason)
            return Outcome.DEAD_LETTERED
        delay = self.spec.backoff_s[min(attempt - 1, len(self.spec.backoff_s) - 1)]
        log.warning("message_failed", consumer=self.spec.name, subject=delivery.subject,
                    attempt=attempt, retry_in=delay, error=error)
        await delivery.nak(delay=delay)
        return Outcome.RETRY


class Waker:
    """Ends the consumers' idle waits at once. Set when ``stop`` is, and by the messaging
    runtime after the broker comes back: a consumer then checks its durable consumer is still
    there (a broker restarted on an empty store has forgotten it) and creates it again."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    @property
    def event(self) -> asyncio.Event:
        return self._event

    def wake(self) -> None:
        woken, self._event = self._event, asyncio.Event()
        woken.set()


async def _wake_on(stop: asyncio.Event, waker: Waker) -> None:
    await stop.wait()
    waker.wake()


def deliver_subject(nc: NATS, stream: str, durable: str) -> str:
    """Where the broker pushes a durable consumer's messages: under the connection's own
    reply-inbox prefix, the only subjects a service's broker permissions let it subscribe to.
    The same for every instance of a service (they share the messages as one queue group)."""
    prefix = nc.new_inbox().rsplit(".", 1)[0]
    return f"{prefix}.deliver.{stream}.{durable}"


def consumer_config(spec: ConsumerSpec, deliver_to: str) -> ConsumerConfig:
    """A push consumer (ADR 0040): the broker sends each message as it is stored, so a
    consumer never asks for it; at most ``max_ack_pending`` are out unacknowledged."""
    return ConsumerConfig(
        durable_name=spec.name, ack_policy=AckPolicy.EXPLICIT, max_deliver=spec.max_deliver,
        ack_wait=spec.ack_wait_s,
        deliver_policy=DeliverPolicy.ALL if spec.deliver_all else DeliverPolicy.NEW,
        filter_subjects=spec.subjects if len(spec.subjects) > 1 else None,
        filter_subject=spec.subjects[0] if len(spec.subjects) == 1 else None,
        deliver_subject=deliver_to, deliver_group=spec.name,
        max_ack_pending=max(1000, spec.batch * 4))


# A consumer usually starts before the producer that owns its stream has declared it: the loop
# retries until the stream exists. For this long from the consumer's start that is the usual
# start-up, logged at info; a stream still missing after it is a warning.
STREAM_AWAITED_QUIETLY_S = 60.0
_STREAM_NOT_FOUND = 10059  # JetStream's err_code


def _stream_missing(exc: Exception) -> bool:
    return isinstance(exc, NotFoundError) and exc.err_code == _STREAM_NOT_FOUND


async def run_jetstream_consumer(consumer: InboxConsumer, nc: NATS, stop: asyncio.Event,
                                 waker: Waker | None = None) -> None:
    """Receive and process until ``stop``; reconnect-tolerant (errors back off and retry).
    Its lag is sampled apart (``chassis.messaging.sampler``), so a handler that hangs still
    shows as a growing lag."""
    waker = waker if waker is not None else Waker()
    stop_wakes = asyncio.ensure_future(_wake_on(stop, waker))
    try:
        await _consume(consumer, nc, stop, waker)
    finally:
        stop_wakes.cancel()


async def _consume(consumer: InboxConsumer, nc: NATS, stop: asyncio.Event,
                   waker: Waker) -> None:
    spec = consumer.spec
    js = nc.jetstream()
    config = consumer_config(spec, deliver_subject(nc, spec.stream, spec.name))
    arrived: asyncio.Queue[Msg] = asyncio.Queue()

    async def receive(msg: Msg) -> None:
        arrived.put_nowait(msg)

    backoff = 0.2
    sub: Subscription | None = None
    ensured = False
    awaiting_stream_until: float | None = time.monotonic() + STREAM_AWAITED_QUIETLY_S
    try:
        while not stop.is_set():
            try:
                if not ensured:
                    await ensure_consumer(js, spec.stream, config)
                    ensured, awaiting_stream_until = True, None
                if sub is None:
                    sub = await nc.subscribe(config.deliver_subject or "", queue=spec.name,
                                             cb=receive)
                msgs = await _next_batch(arrived, spec.batch, waker)
                if not msgs:
                    ensured = False  # woken: after a reconnect, check the consumer is there
                    continue
                started = time.perf_counter()
                await consumer.process_batch([JetStreamDelivery(m) for m in msgs])
                linger = min(spec.linger_s, time.perf_counter() - started)
                if len(msgs) < spec.batch and arrived.qsize() < spec.batch and linger > 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), linger)
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if awaiting_stream_until is not None and _stream_missing(exc) \
                        and time.monotonic() < awaiting_stream_until:
                    log.info("consumer_awaiting_stream", consumer=spec.name,
                             stream=spec.stream, retry_in=backoff)
                else:
                    log.warning("consumer_loop_failed", consumer=spec.name, error=str(exc),
                                retry_in=backoff)
                ensured = False
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 5.0)
    finally:
        if sub is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sub.unsubscribe(), 1.0)
        await _hand_back(arrived)


async def _hand_back(arrived: asyncio.Queue[Msg]) -> None:
    """At a stop, what the broker pushed and this instance did not handle goes back at once
    (a nak), to another instance or to this one's successor, not after the ack wait."""
    while not arrived.empty():
        msg = arrived.get_nowait()
        with contextlib.suppress(Exception):
            await msg.nak()


async def _next_batch(arrived: asyncio.Queue[Msg], batch: int, waker: Waker) -> list[Msg]:
    """What has arrived (up to ``batch``); when nothing has, wait for the next message or
    the waker (a stop, a reconnect), whichever comes first: an empty list means woken.

    Nothing is asked of the broker while idle: a push consumer's messages come as they are
    stored (ADR 0040; a pull consumer asked once per message and once per idle wait)."""
    if arrived.empty():
        getting = asyncio.ensure_future(arrived.get())
        woken = asyncio.ensure_future(waker.event.wait())
        try:
            await asyncio.wait({getting, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if not getting.done():
                getting.cancel()
        if getting.cancelled() or not getting.done():
            return []
        msgs = [getting.result()]
    else:
        msgs = []
    while len(msgs) < batch and not arrived.empty():
        msgs.append(arrived.get_nowait())
    return msgs


def _filters(config: ConsumerConfig) -> set[str]:
    return set(config.filter_subjects or []) | ({config.filter_subject}
                                                if config.filter_subject else set())


async def ensure_consumer(js: JetStreamContext, stream: str, config: ConsumerConfig) -> None:
    """Create the durable consumer once; an existing one keeps its position. When a new
    release handles other subjects, the existing consumer's filter is updated in place
    (JetStream allows that edit), or it would never see the new messages.

    A pull consumer left by a release before ADR 0040 cannot be edited into a push one: it is
    replaced by one that starts right after its acknowledged floor. What it had delivered
    and not acknowledged comes again, and the inbox skips what was handled."""
    try:
        info = await js.consumer_info(stream, config.durable_name or "")
    except NotFoundError:
        await js.add_consumer(stream, config)
        return
    if config.deliver_subject and not info.config.deliver_subject:
        floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
        replacement = replace(config)
        # A work queue holds only what is not yet acknowledged, and its consumers must start
        # at its beginning (JetStream refuses a start sequence there).
        work_queue = (await js.stream_info(stream)).config.retention == RetentionPolicy.WORK_QUEUE
        if floor and not work_queue:
            replacement.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            replacement.opt_start_seq = floor + 1
        await js.delete_consumer(stream, config.durable_name or "")
        await js.add_consumer(stream, replacement)
        log.info("consumer_made_push", consumer=config.durable_name, stream=stream,
                 resumes_after=floor)
        return
    if (_filters(info.config) != _filters(config)
            or info.config.deliver_subject != config.deliver_subject):
        await js.add_consumer(stream, config)
        log.info("consumer_filter_updated", consumer=config.durable_name, stream=stream,
                 subjects=sorted(_filters(config)))
