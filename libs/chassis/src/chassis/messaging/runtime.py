"""Run a service's messaging: declare its streams, relay its outbox, run its consumers.

Started by the app factory once NATS is connected; stopped (relay and consumers drained)
when the app shuts down. A service only says what it produces and consumes.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog
from nats.aio.client import Client as NATS

from chassis.db import Database
from chassis.messaging.broker import JetStreamPublisher, Publisher
from chassis.messaging.consumer import (
    ConsumerSpec,
    InboxConsumer,
    Waker,
    run_jetstream_consumer,
)
from chassis.messaging.inbox import INBOX_PURGE_INTERVAL_S
from chassis.messaging.metrics import MessagingMetrics
from chassis.messaging.outbox import hand_off_after_commit
from chassis.messaging.relay import OutboxRelay
from chassis.messaging.sampler import SAMPLE_INTERVAL_S, run_consumer_sampler
from chassis.messaging.streams import ensure_dead_letter_stream, ensure_stream

log = structlog.get_logger("chassis.messaging")


@dataclass
class StreamSpec:
    name: str
    subjects: list[str]
    work_queue: bool = False


@dataclass
class Messaging:
    """What a service produces (streams it owns, an outbox) and consumes.

    The broker's permissions are derived from it (``chassis.broker_permissions``): the
    outbox may publish to the owned streams that are not work queues (its events) and to
    ``sends`` (commands into other services' queues), nothing else.
    """

    streams: list[StreamSpec] = field(default_factory=list)
    outbox: bool = False
    sends: list[str] = field(default_factory=list)
    consumers: list[ConsumerSpec] = field(default_factory=list)
    relay_batch_size: int = 500
    # The inbox purge runs as the app's background task "inbox-purge" (chassis.app).
    inbox_purge_interval_s: float = INBOX_PURGE_INTERVAL_S
    sample_interval_s: float = SAMPLE_INTERVAL_S  # the consumers' lag and dead letters


class MessagingRuntime:
    def __init__(self, spec: Messaging, db: Database, database_url: str,
                 metrics: MessagingMetrics, *, publish_spans: bool = False) -> None:
        self.spec = spec
        self._publish_spans = publish_spans
        self._db = db
        self._url = database_url
        self.metrics = metrics
        self._stop = asyncio.Event()
        self._waker = Waker()
        self._tasks: list[asyncio.Task[None]] = []
        self.relay: OutboxRelay | None = None

    async def start(self, nc: NATS) -> None:
        """Declare the streams, then start the relay and consumers. Safe to call again after
        a failure (the broker dropped out while declaring): the tasks start only once."""
        if self._tasks:
            return
        js = nc.jetstream()
        for stream in self.spec.streams:
            await ensure_stream(js, stream.name, stream.subjects, work_queue=stream.work_queue)
        if self.spec.consumers:  # only consumers dead-letter
            await ensure_dead_letter_stream(js)
        publisher = JetStreamPublisher(js)
        if self.spec.outbox:
            self.relay = OutboxRelay(self._url, publisher, batch_size=self.spec.relay_batch_size,
                                     metrics=self.metrics, publish_spans=self._publish_spans)
            # What this process commits, it publishes itself (ADR 0042).
            self.relay.accept_hand_offs()
            hand_off_after_commit(self._db.engine, self.relay)
            self._tasks.append(asyncio.create_task(self.relay.run(self._stop),
                                                   name="outbox-relay"))
        for consumer in self.inbox_consumers(publisher):
            self._tasks.append(asyncio.create_task(
                run_jetstream_consumer(consumer, nc, self._stop, self._waker),
                name=f"consumer-{consumer.spec.name}"))
        if self.spec.consumers:
            self._tasks.append(asyncio.create_task(run_consumer_sampler(
                js, self.spec.consumers, self.metrics, self._stop,
                interval_s=self.spec.sample_interval_s, on_missing=self._waker.wake),
                name="consumer-sampler"))
        log.info("messaging_started", outbox=self.spec.outbox,
                 consumers=[c.name for c in self.spec.consumers])

    def inbox_consumers(self, publisher: Publisher) -> list[InboxConsumer]:
        """One inbox consumer per declared consumer, each held to the subjects the service
        may send (``Messaging.sends``): a command forwarded elsewhere is dead-lettered
        (ADR 0053), since the broker would refuse its publish."""
        return [InboxConsumer(spec, self._db, publisher, self.metrics, may_send=self.spec.sends)
                for spec in self.spec.consumers]

    def wake_consumers(self) -> None:
        """After a reconnect: each consumer checks its durable consumer is still on the
        broker (one restarted on an empty store has forgotten it) and creates it again."""
        self._waker.wake()

    async def stop(self) -> None:
        if self.relay is not None:
            hand_off_after_commit(self._db.engine, None)  # from now on the relay's pass
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError, Exception):
                await asyncio.wait_for(task, 5)
        self._tasks.clear()
