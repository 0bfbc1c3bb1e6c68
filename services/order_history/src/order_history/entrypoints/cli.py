"""``python -m order_history``: migrate the database, then serve.

``python -m order_history rebuild``: migrate, then empty the view and replay the producers'
streams into it (``rebuild`` below); prints the counts as JSON and
exits 0, or 1 if any message failed. The running service may stay up meanwhile.

How the read model is rebuilt from the producers' streams.

``rebuild(db, js)``:
1. in one transaction, empty ``order_view`` and delete this service's inbox rows;
2. replay ORDERS_EVENTS, PAYMENTS_EVENTS and SHIPPING_EVENTS from their first message, each
   through an ephemeral *ordered* consumer (no durable state on the server, nothing acked),
   up to the last sequence the stream held when the replay began;
3. hand every message to an ``InboxConsumer`` with the *same* name and handlers as the
   durable consumer of that stream, in batches, so it runs the same code path.

The durable consumers keep running meanwhile. The inbox is what keeps the two from doubling
an effect: whichever of the durable consumer and the replay handles a message first records
``(consumer, message_id)``, and the other skips it. Because the merge rules are commutative
(see ``domain.model``), the order in which the two interleave does not matter either. A
message the durable consumer handles after step 1 but past the replay's end is simply its
ordinary work.

What cannot be replayed is what the streams no longer hold: events older than a stream's
``max_age`` (7 days by default) are gone, and so are their orders' facts after a rebuild.

A message that fails in the replay (poison, or a handler error) is counted and logged, not
retried or dead-lettered again: the durable consumer dead-lettered it the first time.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import orjson
import structlog
from chassis.db import Database
from chassis.logging import configure_logging
from chassis.messaging.broker import Outgoing
from chassis.messaging.consumer import ConsumerSpec, InboxConsumer, Outcome
from chassis.migrations import upgrade_to_head
from chassis.nats_conn import connect_options
from chassis.serve import run_service
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from order_history.adapters.repository import OrderViewRepository
from order_history.app import MIGRATIONS_DIR, create_app
from order_history.entrypoints.consumers import CONSUMERS, consumer_specs
from order_history.settings import OrderHistorySettings

log = structlog.get_logger("order_history.rebuild")

BATCH = 256
IDLE_TIMEOUT_S = 5.0


@dataclass
class StreamReplay:
    stream: str
    consumer: str
    found: bool = True
    last_sequence: int = 0
    messages: int = 0
    handled: int = 0
    duplicates: int = 0
    failed: int = 0


@dataclass
class RebuildReport:
    streams: list[StreamReplay] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "seconds": round(self.seconds, 3),
                "streams": [vars(s) for s in self.streams]}


class _ReplayDelivery:
    """A replayed message: nothing to ack on an ordered consumer, and a failure is final
    (reported as if its last delivery failed, so the consumer never asks for a retry)."""

    def __init__(self, msg: Msg, final_attempt: int) -> None:
        self.subject = msg.subject
        self.headers = dict(msg.headers or {})
        self.data = msg.data
        self._sequence = msg.metadata.sequence.stream
        self._attempt = final_attempt

    @property
    def num_delivered(self) -> int:
        return self._attempt

    @property
    def stream_sequence(self) -> int:
        return self._sequence

    async def ack(self) -> None:
        pass

    async def nak(self, delay: float | None = None) -> None:
        pass

    async def term(self) -> None:
        pass


class _FailedMessages:
    """Receives what the consumer would dead-letter; the replay only counts and logs it."""

    def __init__(self) -> None:
        self.messages: list[Outgoing] = []

    async def publish_batch(self, messages: list[Outgoing]) -> None:
        self.messages.extend(messages)


async def replay_stream(spec: ConsumerSpec, db: Database, js: JetStreamContext, *,
                        batch: int = BATCH, idle_timeout_s: float = IDLE_TIMEOUT_S
                        ) -> StreamReplay:
    report = StreamReplay(spec.stream, spec.name)
    try:
        info = await js.stream_info(spec.stream)
    except NotFoundError:
        report.found = False
        return report
    report.last_sequence = info.state.last_seq
    if not info.state.messages:
        return report
    consumer = InboxConsumer(spec, db, _FailedMessages())
    # The whole stream, not only the durable consumer's subjects: events the live consumers
    # skip because the outcome tells them (ADR 0039) still hold what approvals published
    # before OrderApproved carried it.
    subjects = info.config.subjects or []
    sub = await js.subscribe(subjects[0] if len(subjects) == 1 else spec.subjects[0],
                             stream=spec.stream, ordered_consumer=True,
                             deliver_policy=DeliverPolicy.ALL)
    try:
        sequence = 0
        while sequence < report.last_sequence:
            pending: list[_ReplayDelivery] = []
            timeout = idle_timeout_s
            while len(pending) < batch and sequence < report.last_sequence:
                try:
                    msg = await sub.next_msg(timeout=timeout)
                except nats.errors.TimeoutError:
                    break
                delivery = _ReplayDelivery(msg, spec.max_deliver)
                sequence = delivery.stream_sequence
                pending.append(delivery)
                timeout = 0.01  # drain what is buffered, then handle the batch
            if not pending:
                log.warning("replay_stopped_early", stream=spec.stream, at=sequence,
                            last=report.last_sequence)
                break
            outcomes = await consumer.process_batch(list(pending))
            report.messages += len(outcomes)
            report.handled += outcomes.count(Outcome.HANDLED)
            report.duplicates += outcomes.count(Outcome.DUPLICATE)
            report.failed += sum(o not in (Outcome.HANDLED, Outcome.DUPLICATE)
                                 for o in outcomes)
    finally:
        await sub.unsubscribe()
    return report


async def rebuild(db: Database, js: JetStreamContext, *, batch: int = BATCH,
                  idle_timeout_s: float = IDLE_TIMEOUT_S) -> RebuildReport:
    """Empty the view and replay every producer's stream into it; see the module doc."""
    started = time.perf_counter()
    async with db.unit_of_work() as uow:
        await OrderViewRepository(uow.session).clear(list(CONSUMERS))
        await uow.commit()
    report = RebuildReport()
    for spec in consumer_specs():
        stream = await replay_stream(spec, db, js, batch=batch, idle_timeout_s=idle_timeout_s)
        log.info("stream_replayed", **vars(stream))
        report.streams.append(stream)
    async with db.unit_of_work() as uow:
        report.rows = await OrderViewRepository(uow.session).count()
    report.seconds = time.perf_counter() - started
    log.info("rebuild_done", rows=report.rows, seconds=round(report.seconds, 3))
    return report


async def run_rebuild(settings: OrderHistorySettings) -> RebuildReport:
    import nats

    db = Database(settings.database_url, pool_size=2,
                  application_name=f"{settings.instance}-rebuild")
    nc = await nats.connect(settings.nats_url, name=f"{settings.instance}-rebuild",
                            **connect_options(settings))
    try:
        return await rebuild(db, nc.jetstream())
    finally:
        await nc.close()
        await db.dispose()


def main(argv: list[str]) -> int:
    settings = OrderHistorySettings()
    if not argv:
        run_service(settings, create_app, MIGRATIONS_DIR)  # type: ignore[arg-type]
        return 0
    if argv != ["rebuild"]:
        print("usage: python -m order_history [rebuild]", file=sys.stderr)
        return 2
    if not settings.database_url or not settings.nats_url:
        print("order_history rebuild: ORDER_HISTORY_DATABASE_URL and ORDER_HISTORY_NATS_URL "
              "must be set", file=sys.stderr)
        return 2
    configure_logging(settings.service_name, settings.instance, settings.log_level)
    upgrade_to_head(MIGRATIONS_DIR, settings.database_url)
    report = asyncio.run(run_rebuild(settings))
    sys.stdout.write(orjson.dumps(report.as_dict()).decode() + "\n")
    return 1 if any(s.failed for s in report.streams) else 0
