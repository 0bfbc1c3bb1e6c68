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
    Waker,
    ensure_consumer,
    run_jetstream_consumer,
)
from chassis.messaging.dlq import list_dead_letters, replay_dead_letter, show_dead_letter
from chassis.messaging.envelope import H_MESSAGE_ID, H_NATS_MSG_ID, H_OCCURRED_AT, H_TYPE, Envelope
from chassis.messaging.metrics import MessagingMetrics
from chassis.messaging.outbox import stage_message
from chassis.messaging.relay import OutboxRelay
from chassis.messaging.sampler import run_consumer_sampler, sample_consumers
from chassis.messaging.streams import (
    ensure_dead_letter_stream,
    ensure_events_stream,
    ensure_stream,
)
from chassis.messaging.tables import inbox_table, outbox_table
from mercato.runtime.nats import Nats
from mercato.testing.infra import NatsProcess, free_port
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig
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
        InboxConsumer(spec, db, JetStreamPublisher(js), metrics), nc, stop))
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
        Recording(spec, db, JetStreamPublisher(js)), nc, stop))
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


# --- push consumers (ADR 0040) ---------------------------------------------------------

def _reader_spec(producer: str) -> ConsumerSpec:
    return ConsumerSpec(f"{producer}-seen", f"{producer.upper()}_EVENTS",
                        [f"{producer}.events.>"], {"Thing.v1": remember})


async def _publish_thing(js: nats.js.JetStreamContext, producer: str,
                         subject: str = "events.thing") -> None:
    mid = str(uuid.uuid4())
    await js.publish(f"{producer}.{subject}", b"{}",
                     headers={H_NATS_MSG_ID: mid, H_MESSAGE_ID: mid, H_TYPE: "Thing.v1",
                              H_OCCURRED_AT: "2026-01-01T00:00:00+00:00"})


def _running(consumer: InboxConsumer, nc: NATS, stop: asyncio.Event,
             waker: Waker | None = None) -> asyncio.Task[None]:
    return asyncio.create_task(run_jetstream_consumer(consumer, nc, stop, waker))


async def _stopped(stop: asyncio.Event, *tasks: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait(set(tasks), timeout=10)


async def test_a_consumer_asks_the_broker_for_nothing_an_ack_per_message_is_all_it_sends(
        db: Database, nats_url: str) -> None:
    """The broker pushes each message as it is stored: a consumer sends one ack per message
    and no request for the next one, idle or busy (a pull consumer sent one or two requests
    per message and one per idle wait); a stop ends its idle wait at once."""
    nc, publisher = await nats.connect(nats_url), await nats.connect(nats_url)
    js = publisher.jetstream()
    producer = f"p{uuid.uuid4().hex[:8]}"
    await ensure_events_stream(js, producer)
    stop = asyncio.Event()
    task = _running(InboxConsumer(_reader_spec(producer), db, JetStreamPublisher(js)), nc, stop)
    try:
        await _publish_thing(js, producer)
        await wait_for(lambda: _count(db, 1), 10)
        await asyncio.sleep(0.2)  # the ack is out
        sent = nc.stats["out_msgs"]
        for n in range(2, 12):  # one at a time: every batch is a single message
            await _publish_thing(js, producer)
            await wait_for(lambda n=n: _count(db, n), 10)  # type: ignore[misc]
        await asyncio.sleep(1.5)  # and idle for a while
        assert nc.stats["out_msgs"] - sent == 10
        info = await js.consumer_info(f"{producer.upper()}_EVENTS", f"{producer}-seen")
        assert info.config.deliver_subject and info.config.deliver_group == f"{producer}-seen"
        stop.set()
        done, _ = await asyncio.wait({task}, timeout=1.5)
        assert task in done, "the stop waited on the idle consumer"
        task.result()
    finally:
        await _stopped(stop, task)
        await nc.close()
        await publisher.close()


async def _count(db: Database, n: int) -> bool:
    return len(await seen(db)) == n


async def test_instances_of_a_service_share_its_consumer_and_handle_each_message_once(
        db: Database, nats_url: str) -> None:
    producer = f"p{uuid.uuid4().hex[:8]}"
    conns = [await nats.connect(nats_url) for _ in range(3)]
    js = conns[0].jetstream()
    await ensure_events_stream(js, producer)
    handled_by: dict[int, int] = {0: 0, 1: 0}

    def instance(i: int) -> InboxConsumer:
        class Counting(InboxConsumer):
            async def process_batch(self, deliveries):  # type: ignore[no-untyped-def]
                handled_by[i] += len(deliveries)
                return await super().process_batch(deliveries)
        return Counting(_reader_spec(producer), db, JetStreamPublisher(js))

    stop = asyncio.Event()
    tasks = [_running(instance(i), conns[i], stop) for i in (0, 1)]
    try:
        await asyncio.sleep(0.5)  # both bound to the queue group
        for _ in range(40):
            await _publish_thing(conns[2].jetstream(), producer)
        await wait_for(lambda: _count(db, 40), 20)
        assert handled_by[0] > 0 and handled_by[1] > 0, handled_by
        assert handled_by[0] + handled_by[1] == 40  # no message went to both
    finally:
        await _stopped(stop, *tasks)
        for nc in conns:
            await nc.close()


async def test_a_clean_stop_hands_back_what_was_pushed_and_not_handled(
        db: Database, nats_url: str) -> None:
    """What the broker pushed ahead to a stopping instance goes to the next one at once,
    not after the 30 s ack wait."""
    producer = f"p{uuid.uuid4().hex[:8]}"
    first, second = await nats.connect(nats_url), await nats.connect(nats_url)
    js = first.jetstream()
    await ensure_events_stream(js, producer)
    started = asyncio.Event()

    async def slow(session: AsyncSession, env: Envelope) -> None:
        started.set()
        await remember(session, env)
        await asyncio.sleep(0.5)

    spec = ConsumerSpec(f"{producer}-seen", f"{producer.upper()}_EVENTS",
                        [f"{producer}.events.>"], {"Thing.v1": slow}, batch=1, ack_wait_s=30)
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    task = _running(InboxConsumer(spec, db, JetStreamPublisher(js)), first, stop_first)
    later: asyncio.Task[None] | None = None
    try:
        for _ in range(6):
            await _publish_thing(js, producer)
        await asyncio.wait_for(started.wait(), 10)
        await _stopped(stop_first, task)  # the first is handled; five were pushed ahead
        assert len(await seen(db)) < 6
        later = _running(InboxConsumer(_reader_spec(producer), db, JetStreamPublisher(js)),
                         second, stop_second)
        await wait_for(lambda: _count(db, 6), 10)
    finally:
        await _stopped(stop_first, task)
        if later is not None:
            await _stopped(stop_second, later)
        await first.close()
        await second.close()


async def test_a_pull_consumer_of_an_older_release_becomes_push_where_it_had_got_to(
        db: Database, nats_url: str) -> None:
    """The durable a release before ADR 0040 left (pull) cannot be edited into a push one:
    it is replaced, starting after its acknowledged floor. Nothing acknowledged is handled
    again; what was delivered and not acknowledged is."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    producer = f"p{uuid.uuid4().hex[:8]}"
    stream = f"{producer.upper()}_EVENTS"
    await ensure_events_stream(js, producer)
    spec = _reader_spec(producer)
    await js.add_consumer(stream, ConsumerConfig(durable_name=spec.name,
                                                 filter_subject=f"{producer}.events.>"))
    for _ in range(4):
        await _publish_thing(js, producer)
    old = await js.pull_subscribe_bind(durable=spec.name, stream=stream)
    taken = await old.fetch(3, timeout=2)
    for msg in taken[:2]:
        await msg.ack_sync()  # the old release handled two, and died handling the third
    await old.unsubscribe()
    stop = asyncio.Event()
    task = _running(InboxConsumer(spec, db, JetStreamPublisher(js)), nc, stop)
    try:
        await wait_for(lambda: _count(db, 2), 10)  # the third (unacknowledged) and fourth
        await _publish_thing(js, producer)
        await wait_for(lambda: _count(db, 3), 10)
        info = await js.consumer_info(stream, spec.name)
        assert info.config.deliver_subject is not None
        await asyncio.sleep(0.3)
        assert len(await seen(db)) == 3
    finally:
        await _stopped(stop, task)
        await nc.close()


async def test_a_pull_consumer_of_a_work_queue_becomes_push_at_once(
        db: Database, nats_url: str, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """A command queue (work-queue retention) holds only what is not acknowledged, and
    JetStream refuses a start sequence there: the replacement starts at its beginning, on the
    first try, and gets exactly the commands not yet acknowledged."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    producer = f"p{uuid.uuid4().hex[:8]}"
    stream = f"{producer.upper()}_COMMANDS"
    await ensure_stream(js, stream, [f"{producer}.commands.>"], work_queue=True)
    spec = ConsumerSpec(f"{producer}-commands", stream, [f"{producer}.commands.>"],
                        {"Thing.v1": remember})
    await js.add_consumer(stream, ConsumerConfig(durable_name=spec.name,
                                                 ack_policy=AckPolicy.EXPLICIT,
                                                 filter_subject=f"{producer}.commands.>"))
    for _ in range(3):
        await _publish_thing(js, producer, "commands.do")
    old = await js.pull_subscribe_bind(durable=spec.name, stream=stream)
    [done] = await old.fetch(1, timeout=2)
    await done.ack_sync()
    await old.unsubscribe()
    stop = asyncio.Event()
    capfd.readouterr()
    task = _running(InboxConsumer(spec, db, JetStreamPublisher(js)), nc, stop)
    try:
        await wait_for(lambda: _count(db, 2), 10)
        info = await js.consumer_info(stream, spec.name)
        assert info.config.deliver_subject is not None
    finally:
        await _stopped(stop, task)
        await nc.close()
    # What the loop logged, wherever the logging is routed when this test runs: structlog
    # caches its loggers, so capturing them depends on the tests that ran before.
    out, err = capfd.readouterr()
    logged = out + err + caplog.text
    assert "consumer_made_push" in logged
    assert "consumer_loop_failed" not in logged  # made push on the first try


async def test_a_consumer_keeps_receiving_across_a_broker_restart(
        db: Database, private_nats: NatsProcess) -> None:
    """The broker forgets no push consumer across a restart on its store: the client
    subscribes again when it reconnects and the messages come, with no wake-up."""
    nc = await nats.connect(private_nats.url, max_reconnect_attempts=-1,
                            reconnect_time_wait=0.2)
    js = nc.jetstream()
    producer = f"p{uuid.uuid4().hex[:8]}"
    await ensure_events_stream(js, producer)
    stop = asyncio.Event()
    task = _running(InboxConsumer(_reader_spec(producer), db, JetStreamPublisher(js)), nc, stop)
    try:
        await asyncio.sleep(1.0)  # idle, bound
        private_nats.stop()
        private_nats.start()  # same store and port: the stream and consumer survive
        await wait_for(lambda: _true(nc.is_connected), 20)
        await _publish_when_jetstream_answers(js, producer)
        await wait_for(lambda: _count(db, 1), 15)
    finally:
        await _stopped(stop, task)
        await nc.close()


async def test_a_durable_lost_under_a_running_consumer_is_made_again(
        db: Database, nats_url: str) -> None:
    """A push consumer is not told its durable is gone (deleted by hand, or a broker
    restarted on an empty store). The sampler notices within a round and wakes the
    consumers (as the app does after a reconnect); each checks its durable and makes it
    again, and the next message is handled."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    producer = f"p{uuid.uuid4().hex[:8]}"
    await ensure_events_stream(js, producer)
    spec = _reader_spec(producer)
    stop, waker = asyncio.Event(), Waker()
    task = _running(InboxConsumer(spec, db, JetStreamPublisher(js)), nc, stop, waker)
    sampler = asyncio.create_task(run_consumer_sampler(
        js, [spec], MessagingMetrics(CollectorRegistry()), stop, interval_s=0.2,
        on_missing=waker.wake))
    try:
        await _publish_thing(js, producer)
        await wait_for(lambda: _count(db, 1), 10)
        await js.delete_consumer(spec.stream, spec.name)

        async def there_again() -> bool:
            try:
                return bool(await js.consumer_info(spec.stream, spec.name))
            except nats.js.errors.NotFoundError:
                return False
        await wait_for(there_again, 10)
        await _publish_thing(js, producer)
        await wait_for(lambda: _count(db, 2), 10)
    finally:
        await _stopped(stop, task, sampler)
        await nc.close()


async def _publish_when_jetstream_answers(js: nats.js.JetStreamContext, producer: str) -> None:
    for _ in range(40):  # JetStream answers a moment after the client is back
        try:
            await _publish_thing(js, producer)
            return
        except nats.errors.TimeoutError:
            await asyncio.sleep(0.25)
    raise AssertionError("JetStream did not answer after the restart")


async def _true(value: bool) -> bool:
    return value


async def test_a_consumer_started_before_its_stream_waits_for_it_without_a_warning(
        db: Database, nats_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The usual start-up: the producer declares its stream after the consumer started. The
    consumer's retries are info, and it handles what is published once the stream exists; a
    stream still missing after the quiet window is a warning."""
    import chassis.messaging.consumer as consumer_module
    from chassis.testing import LogRecorder

    logged = LogRecorder()
    monkeypatch.setattr(consumer_module, "log", logged)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    producer = f"p{uuid.uuid4().hex[:8]}"
    stop = asyncio.Event()
    task = _running(InboxConsumer(_reader_spec(producer), db, JetStreamPublisher(js)), nc, stop)
    try:
        await wait_for(lambda: _true(len(logged.lines) >= 2), 10)
        await ensure_stream(js, f"{producer.upper()}_EVENTS", [f"{producer}.events.>"])
        await _publish_thing(js, producer)
        await wait_for(lambda: _count(db, 1), 15)
    finally:
        await _stopped(stop, task)
    assert {line for line in logged.events() if line[1] != "consumer_made_push"} == {
        ("info", "consumer_awaiting_stream")}

    logged.lines.clear()
    monkeypatch.setattr(consumer_module, "STREAM_AWAITED_QUIETLY_S", 0.5)
    stop = asyncio.Event()
    task = _running(InboxConsumer(_reader_spec(f"{producer}x"), db, JetStreamPublisher(js)),
                    nc, stop)
    try:
        await wait_for(lambda: _true(("warning", "consumer_loop_failed") in logged.events()), 10)
    finally:
        await _stopped(stop, task)
        await nc.close()
    assert logged.events()[0] == ("info", "consumer_awaiting_stream")
