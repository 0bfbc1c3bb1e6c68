"""Failure paths over a real JetStream: a broker outage, poison messages, dead-letter replay."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from chassis.db import Database
from chassis.messaging.broker import JetStreamPublisher
from chassis.messaging.consumer import (
    ConsumerSpec,
    InboxConsumer,
    ensure_consumer,
    run_jetstream_consumer,
)
from chassis.messaging.dlq import list_dead_letters, replay_dead_letter, show_dead_letter
from chassis.messaging.envelope import H_MESSAGE_ID, H_NATS_MSG_ID, H_OCCURRED_AT, H_TYPE, Envelope
from chassis.messaging.metrics import MessagingMetrics
from chassis.messaging.outbox import stage_message
from chassis.messaging.relay import OutboxRelay
from chassis.messaging.sampler import sample_consumers
from chassis.messaging.streams import ensure_dead_letter_stream, ensure_events_stream
from chassis.messaging.tables import inbox_table, outbox_table
from mercato.runtime.nats import Nats
from mercato.testing.infra import NatsProcess, free_port
from nats.js.api import ConsumerConfig
from prometheus_client import CollectorRegistry
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncSession

pytestmark = pytest.mark.integration

metadata = MetaData()
outbox_table(metadata)
inbox_table(metadata)


@pytest.fixture
async def db(fresh_database: str) -> AsyncIterator[Database]:
    database = Database(fresh_database)
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(text("CREATE TABLE seen (message_id uuid PRIMARY KEY, kind text)"))
    yield database
    await database.dispose()


async def remember(session: AsyncSession, env: Envelope) -> None:
    await session.execute(text("INSERT INTO seen (message_id, kind) VALUES (:m, :k)"),
                          {"m": env.message_id, "k": env.message_type})


async def seen(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        return list((await conn.execute(text("SELECT kind FROM seen ORDER BY kind"))).scalars())


async def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_nats_outage_grows_the_outbox_and_everything_arrives_after(
        db: Database, fresh_database: str, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    server = Nats(tmp_path, free_port())
    server.start()
    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    try:
        await ensure_events_stream(js, "toy")
        relay = OutboxRelay(fresh_database, JetStreamPublisher(js, ack_timeout_s=1.0),
                            poll_interval_s=0.1)
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        server.stop()  # the broker goes away while the service keeps taking writes
        for _ in range(20):
            async with db.unit_of_work() as uow:  # writes never fail for the user
                await stage_message(uow.session, "toy.events.thing_happened", "ThingHappened.v1", {})
                await uow.commit()

        async def backlog() -> int:
            async with db.engine.connect() as conn:
                return (await conn.execute(text(
                    "SELECT count(*) FROM outbox WHERE published_at IS NULL"))).scalar_one()

        await asyncio.sleep(1.0)
        assert await backlog() == 20  # the outbox holds everything while NATS is down
        server.start()  # same store dir and port: the stream survives

        async def drained() -> bool:
            return await backlog() == 0

        await wait_for(drained, 30)
        stop.set()
        await asyncio.wait_for(task, 10)
        info = await js.stream_info("TOY_EVENTS")
        assert info.state.messages == 20
    finally:
        await nc.close()
        server.stop()


async def test_poison_goes_to_dead_letters_others_flow_and_replay_after_a_fix(
        db: Database, nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    producer = f"p{uuid.uuid4().hex[:8]}"
    consumer_name = f"{producer}-seen"
    await ensure_events_stream(js, producer)
    await ensure_dead_letter_stream(js)

    def headers(message_type: str) -> dict[str, str]:
        mid = str(uuid.uuid4())
        return {H_NATS_MSG_ID: mid, H_MESSAGE_ID: mid, H_TYPE: message_type,
                H_OCCURRED_AT: "2026-01-01T00:00:00+00:00"}

    subject = f"{producer}.events.thing"
    await js.publish(subject, b"{broken json", headers=headers("Thing.v1"))
    await js.publish(subject, b"{}", headers=headers("Thing.v2"))  # a version not known yet
    await js.publish(subject, b"{}", headers=headers("Thing.v1"))  # a good one behind them

    handlers = {"Thing.v1": remember}
    spec = ConsumerSpec(consumer_name, f"{producer.upper()}_EVENTS", [f"{producer}.events.>"],
                        handlers, max_deliver=3, backoff_s=(0.05,))
    stop = asyncio.Event()
    registry = CollectorRegistry()
    metrics = MessagingMetrics(registry)
    task = asyncio.create_task(run_jetstream_consumer(
        InboxConsumer(spec, db, JetStreamPublisher(js), metrics), js, stop))
    try:
        async def two_dead() -> bool:
            return len(await list_dead_letters(js, consumer_name)) == 2

        await wait_for(two_dead)
        assert await seen(db) == ["Thing.v1"]  # later messages kept flowing
        letters = await list_dead_letters(js, consumer_name)
        assert {letter.message_type for letter in letters} == {"Thing.v1", "Thing.v2"}
        broken = next(letter for letter in letters if letter.data == b"{broken json")
        # Malformed: dead-lettered on its first delivery. The unknown version was retried.
        assert "not JSON" in broken.error and broken.deliveries == 1
        assert next(letter for letter in letters if letter.message_type == "Thing.v2"
                    ).deliveries == 3
        shown = await show_dead_letter(js, broken.sequence)
        assert shown is not None and shown.subject == subject

        # The fix: this consumer now understands Thing.v2. Replay re-drives it.
        handlers["Thing.v2"] = remember
        v2 = next(letter for letter in letters if letter.message_type == "Thing.v2")
        assert await replay_dead_letter(js, v2.sequence) is not None

        async def handled_v2() -> bool:
            return await seen(db) == ["Thing.v1", "Thing.v2"]

        await wait_for(handled_v2)
        remaining = await list_dead_letters(js, consumer_name)
        assert [letter.sequence for letter in remaining] == [broken.sequence]

        # What an operator sees on /metrics: the dead letters, the outcomes by message type
        # (a type this consumer has no handler for is "unknown": no unbounded label values),
        # and, sampled apart from the consumer, no lag once the replay is handled and the one
        # dead letter still waiting.
        def sample(name: str, **labels: str) -> float | None:
            return registry.get_sample_value(name, {"consumer": consumer_name, **labels})

        assert sample("dead_letters_total") == 2
        assert sample("consumer_messages_total", type="Thing.v1", outcome="handled") == 1
        assert sample("consumer_messages_total", type="Thing.v2", outcome="handled") == 1
        assert sample("consumer_messages_total", type="Thing.v1",
                      outcome="dead_lettered") == 1
        assert sample("consumer_messages_total", type="unknown", outcome="retry") == 2
        assert sample("consumer_messages_total", type="unknown",
                      outcome="dead_lettered") == 1
        assert sample("consumer_handler_seconds_count", type="Thing.v1") == 2

        async def sampled() -> bool:
            await sample_consumers(js, [spec], metrics)
            return (sample("consumer_lag_messages") == 0
                    and sample("consumer_ack_pending_messages") == 0
                    and sample("dead_letters_waiting") == 1)

        await wait_for(sampled, 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await nc.close()


async def test_consumer_lag_counts_messages_delivered_and_not_yet_acknowledged(
        nats_url: str) -> None:
    """A handler that hangs holds its batch delivered and unacknowledged: the lag must still
    count those messages, or a stuck consumer would look as if it was catching up."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    producer = f"p{uuid.uuid4().hex[:8]}"
    try:
        await ensure_events_stream(js, producer)
        await ensure_dead_letter_stream(js)
        stream = f"{producer.upper()}_EVENTS"
        spec = ConsumerSpec(f"{producer}-reader", stream, [f"{producer}.events.>"], {})
        await ensure_consumer(js, stream, ConsumerConfig(
            durable_name=spec.name, filter_subject=f"{producer}.events.>", ack_wait=60))
        for i in range(5):
            await js.publish(f"{producer}.events.thing", str(i).encode())
        registry = CollectorRegistry()
        metrics = MessagingMetrics(registry)
        labels = {"consumer": spec.name}

        await sample_consumers(js, [spec], metrics)
        assert registry.get_sample_value("consumer_lag_messages", labels) == 5
        assert registry.get_sample_value("consumer_ack_pending_messages", labels) == 0
        assert registry.get_sample_value("dead_letters_waiting", labels) == 0

        sub = await js.pull_subscribe_bind(durable=spec.name, stream=stream)
        taken = await sub.fetch(2, timeout=2)  # delivered, never acknowledged: a hung handler
        assert len(taken) == 2
        await sample_consumers(js, [spec], metrics)
        assert registry.get_sample_value("consumer_lag_messages", labels) == 5
        assert registry.get_sample_value("consumer_ack_pending_messages", labels) == 2

        for msg in taken:
            await msg.ack_sync()
        await sample_consumers(js, [spec], metrics)
        assert registry.get_sample_value("consumer_lag_messages", labels) == 3
        assert registry.get_sample_value("consumer_ack_pending_messages", labels) == 0
    finally:
        await nc.close()


async def test_a_new_release_handling_more_subjects_updates_the_durable_filter(
        nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    producer = f"p{uuid.uuid4().hex[:8]}"
    try:
        await ensure_events_stream(js, producer)
        stream = f"{producer.upper()}_EVENTS"
        old = ConsumerConfig(durable_name="reader", filter_subject=f"{producer}.events.a")
        await ensure_consumer(js, stream, old)
        new = ConsumerConfig(durable_name="reader",
                             filter_subjects=[f"{producer}.events.a", f"{producer}.events.b"])
        await ensure_consumer(js, stream, new)
        info = await js.consumer_info(stream, "reader")
        filters = set(info.config.filter_subjects or []) | {info.config.filter_subject} - {None}
        assert filters == {f"{producer}.events.a", f"{producer}.events.b"}
        await ensure_consumer(js, stream, new)  # unchanged: no edit
    finally:
        await nc.close()


async def test_a_consumer_lingers_after_a_small_batch_so_the_next_carries_more(
        db: Database, nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    producer = f"p{uuid.uuid4().hex[:8]}"
    await ensure_events_stream(js, producer)
    await ensure_dead_letter_stream(js)
    subject = f"{producer}.events.thing"

    async def publish(n: int) -> None:
        for _ in range(n):
            mid = str(uuid.uuid4())
            await js.publish(subject, b"{}", headers={
                H_NATS_MSG_ID: mid, H_MESSAGE_ID: mid, H_TYPE: "Thing.v1",
                H_OCCURRED_AT: "2026-01-01T00:00:00+00:00"})

    batches: list[int] = []

    class Recording(InboxConsumer):
        async def process_batch(self, deliveries):  # type: ignore[no-untyped-def]
            batches.append(len(deliveries))
            return await super().process_batch(deliveries)

    async def slow(session: AsyncSession, env: Envelope) -> None:
        await remember(session, env)
        await asyncio.sleep(0.3)  # a busy machine: the linger grows with the handling time

    spec = ConsumerSpec(f"{producer}-seen", f"{producer.upper()}_EVENTS",
                        [f"{producer}.events.>"], {"Thing.v1": slow}, linger_s=1.0)
    stop = asyncio.Event()
    task = asyncio.create_task(run_jetstream_consumer(
        Recording(spec, db, JetStreamPublisher(js)), js, stop))
    try:
        await publish(1)

        async def handled(n: int) -> bool:
            return len(await seen(db)) == n

        await wait_for(lambda: handled(1))
        assert batches == [1]  # the first message after a quiet spell is not held
        await publish(5)  # arrives while the consumer lingers
        await wait_for(lambda: handled(6))
        assert batches == [1, 5]  # one fetch, one transaction for all five
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await nc.close()


# --- the idle wait (ADR 0037) ------------------------------------------------------------

def _idle_spec(producer: str) -> ConsumerSpec:
    return ConsumerSpec(f"{producer}-seen", f"{producer.upper()}_EVENTS",
                        [f"{producer}.events.>"], {"Thing.v1": remember})


async def _publish_thing(js: nats.js.JetStreamContext, producer: str) -> None:
    mid = str(uuid.uuid4())
    await js.publish(f"{producer}.events.thing", b"{}",
                     headers={H_NATS_MSG_ID: mid, H_MESSAGE_ID: mid, H_TYPE: "Thing.v1",
                              H_OCCURRED_AT: "2026-01-01T00:00:00+00:00"})


async def test_an_idle_consumer_asks_the_broker_once_per_idle_wait_and_stops_at_once(
        db: Database, nats_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle, a consumer keeps one pull request waiting for IDLE_FETCH_S rather than asking
    again every second; a stop does not wait for that request to run out."""
    from chassis.messaging import consumer as consumer_module
    from nats.js.client import JetStreamContext

    lingering: list[float] = []
    real_fetch = JetStreamContext.PullSubscription.fetch

    async def counting_fetch(self, batch=1, timeout=5, heartbeat=None):  # type: ignore[no-untyped-def]
        if batch == 1:
            lingering.append(timeout)
        return await real_fetch(self, batch, timeout, heartbeat)

    monkeypatch.setattr(JetStreamContext.PullSubscription, "fetch", counting_fetch)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    producer = f"p{uuid.uuid4().hex[:8]}"
    await ensure_events_stream(js, producer)
    stop = asyncio.Event()
    task = asyncio.create_task(run_jetstream_consumer(
        InboxConsumer(_idle_spec(producer), db, JetStreamPublisher(js)), js, stop))
    try:
        await _publish_thing(js, producer)  # a message arrives on the waiting request

        async def handled() -> bool:
            return await seen(db) == ["Thing.v1"]

        await wait_for(handled, 10)
        asked = len(lingering)
        await asyncio.sleep(2.5)  # idle: the one waiting request is still the same
        assert len(lingering) - asked <= 1, lingering
        assert consumer_module.IDLE_FETCH_S >= 5 and set(lingering) == {
            consumer_module.IDLE_FETCH_S}
        stop.set()
        done, _ = await asyncio.wait({task}, timeout=1.5)
        assert task in done, "the stop waited for the idle pull request to run out"
        task.result()
    finally:
        stop.set()
        await asyncio.wait({task}, timeout=10)
        await nc.close()


async def test_a_consumer_woken_after_the_broker_restarts_pulls_again_at_once(
        db: Database, private_nats: NatsProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restarted broker forgets the pull request an idle consumer waits on; the waker (the
    app wakes its consumers on reconnect) makes it ask again rather than sit the wait out."""
    from chassis.messaging import consumer as consumer_module

    monkeypatch.setattr(consumer_module, "IDLE_FETCH_S", 60.0)
    nc = await nats.connect(private_nats.url, max_reconnect_attempts=-1,
                            reconnect_time_wait=0.2)
    js = nc.jetstream()
    producer = f"p{uuid.uuid4().hex[:8]}"
    await ensure_events_stream(js, producer)
    stop = asyncio.Event()
    waker = consumer_module.Waker()
    task = asyncio.create_task(run_jetstream_consumer(
        InboxConsumer(_idle_spec(producer), db, JetStreamPublisher(js)), js, stop, waker))
    try:
        await asyncio.sleep(1.0)  # idle: waiting on its pull request
        private_nats.stop()
        private_nats.start()  # same store and port: the stream and consumer survive
        await wait_for(lambda: _true(nc.is_connected), 20)
        waker.wake()
        for _ in range(40):  # JetStream answers a moment after the client is back
            try:
                await _publish_thing(js, producer)
                break
            except nats.errors.TimeoutError:
                await asyncio.sleep(0.25)

        async def handled() -> bool:
            return await seen(db) == ["Thing.v1"]

        await wait_for(handled, 15)  # well inside the 60 s the forgotten request had left
    finally:
        stop.set()
        await asyncio.wait({task}, timeout=10)
        await nc.close()


async def _true(value: bool) -> bool:
    return value
