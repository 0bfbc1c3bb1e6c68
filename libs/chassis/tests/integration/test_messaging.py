"""The messaging loop against real PostgreSQL and NATS JetStream.

A toy producer stages events in its outbox; the relay publishes them; an inbox consumer
applies them to a counters table. The invariants: nothing is lost, nothing takes effect twice.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import nats
import orjson
import pytest
from chassis.db import Database, driver_execute, driver_fetch
from chassis.messaging.broker import JetStreamPublisher
from chassis.messaging.consumer import (
    H_DLQ_DELIVERIES,
    H_DLQ_ERROR,
    ConsumerSpec,
    InboxConsumer,
    Outcome,
    run_jetstream_consumer,
)
from chassis.messaging.envelope import H_CAUSATION, H_CORRELATION, H_TYPE, Envelope, PoisonMessage
from chassis.messaging.inbox import INBOX_RETENTION, purge_inbox, uuid7_floor
from chassis.messaging.memory import InMemoryBroker, MemoryDelivery
from chassis.messaging.metrics import MessagingMetrics
from chassis.messaging.outbox import stage, stage_message
from chassis.messaging.relay import OutboxRelay, asyncpg_dsn
from chassis.messaging.runtime import Messaging
from chassis.messaging.streams import (
    DEAD_LETTER_MAX_AGE_S,
    DEAD_LETTER_STREAM,
    ensure_dead_letter_stream,
    ensure_events_stream,
)
from chassis.messaging.tables import inbox_table, outbox_table
from chassis.testing import metadata_database_fixture
from mercato.testing.infra import PgServer
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry
from sqlalchemy import MetaData, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

pytestmark = pytest.mark.integration

metadata = MetaData()
outbox_table(metadata)
inbox_table(metadata)


db = metadata_database_fixture(
    metadata, "CREATE TABLE counters (name text PRIMARY KEY, value int NOT NULL)")


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


@pytest.fixture
async def js(nc: NATS) -> JetStreamContext:
    return nc.jetstream()


async def produce(db: Database, producer: str, n: int, name: str = "hits") -> None:
    async with db.unit_of_work() as uow:
        for _ in range(n):
            await stage_message(uow.session, f"{producer}.events.incremented", "Incremented.v1",
                        {"counter": name, "by": 1})
        await uow.commit()


async def increment(session: AsyncSession, env: Envelope) -> None:
    await session.execute(text(
        "INSERT INTO counters (name, value) VALUES (:n, :b) "
        "ON CONFLICT (name) DO UPDATE SET value = counters.value + :b"),
        {"n": env.payload["counter"], "b": env.payload["by"]})


async def counter(db: Database, name: str = "hits") -> int:
    async with db.engine.connect() as conn:
        value = (await conn.execute(text("SELECT value FROM counters WHERE name = :n"),
                                    {"n": name})).scalar_one_or_none()
    return value or 0


async def unpublished(db: Database) -> int:
    async with db.engine.connect() as conn:
        return (await conn.execute(text(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL"))).scalar_one()


async def test_rolled_back_transaction_stages_nothing(db: Database) -> None:
    async with db.unit_of_work() as uow:
        await stage_message(uow.session, "p.events.x", "X.v1", {"a": 1})
        # no commit: leaving the unit of work rolls the message back with the change
    assert await unpublished(db) == 0


async def test_a_contract_is_staged_under_its_own_subject_type_and_payload(
        db: Database, fresh_database: str) -> None:
    from contracts.inventory.v1 import ReleaseStock

    command = ReleaseStock(reservation_id="r-1", reason="card_declined")
    async with db.unit_of_work() as uow:
        envelope = await stage(uow.session, command, correlation_id="o-1",
                               causation_id="m-0")
        await uow.commit()
    broker = InMemoryBroker()
    relay = OutboxRelay(fresh_database, broker)
    assert await relay.relay_once() == 1
    await relay.close()
    [sent] = broker.messages
    assert sent.subject == "inventory.commands.release_stock" == envelope.subject
    assert sent.headers[H_TYPE] == "ReleaseStock.v1" == envelope.message_type
    assert (sent.headers[H_CORRELATION], sent.headers[H_CAUSATION]) == ("o-1", "m-0")
    assert orjson.loads(sent.payload) == command.to_payload()


async def test_crash_between_publish_and_mark_delivers_again_and_takes_effect_once(
        db: Database, fresh_database: str) -> None:
    broker = InMemoryBroker()
    crashes = 1

    async def crash_once(point: str) -> None:
        nonlocal crashes
        if point == "after_publish" and crashes:
            crashes -= 1
            raise RuntimeError("simulated crash after publish, before mark")

    relay = OutboxRelay(fresh_database, broker, fault_hook=crash_once)
    await produce(db, "toy", 5)
    with pytest.raises(RuntimeError):
        await relay.relay_once()
    assert len(broker.messages) == 5 and await unpublished(db) == 5  # published, not marked
    assert await relay.relay_once() == 5
    assert len(broker.messages) == 10 and await unpublished(db) == 0  # published twice
    await relay.close()

    consumer = InboxConsumer(ConsumerSpec("toy-counter", "TOY_EVENTS", ["toy.events.>"],
                                          {"Incremented.v1": increment}), db, broker)
    outcomes = [await consumer.process(d) for d in broker.deliveries("toy.events.>")]
    assert outcomes.count(Outcome.HANDLED) == 5 and outcomes.count(Outcome.DUPLICATE) == 5
    assert await counter(db) == 5


@pytest.mark.parametrize("publish_spans", [False, True], ids=["one-span-a-hop", "trace-publish"])
async def test_relay_and_consumer_over_jetstream_keep_the_trace(
        db: Database, fresh_database: str, nc: NATS, js: JetStreamContext,
        publish_spans: bool) -> None:
    from chassis.tracing import configure_tracing
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exported = InMemorySpanExporter()
    configure_tracing("toy", "toy-1", None).add_span_processor(SimpleSpanProcessor(exported))
    producer = f"p{uuid.uuid4().hex[:8]}"
    await ensure_events_stream(js, producer)
    await ensure_dead_letter_stream(js)
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        await produce(db, producer, 3)
        trace_id = format(span.get_span_context().trace_id, "032x")
        request_span_id = span.get_span_context().span_id
    relay = OutboxRelay(fresh_database, JetStreamPublisher(js), publish_spans=publish_spans)
    assert await relay.relay_once() == 3
    await relay.close()

    seen_traces: list[str] = []

    async def record(session: AsyncSession, env: Envelope) -> None:
        seen_traces.append(format(trace.get_current_span().get_span_context().trace_id, "032x"))
        await increment(session, env)

    stop = asyncio.Event()
    spec = ConsumerSpec(f"{producer}-counter", f"{producer.upper()}_EVENTS",
                        [f"{producer}.events.>"], {"Incremented.v1": record})
    task = asyncio.create_task(run_jetstream_consumer(
        InboxConsumer(spec, db, JetStreamPublisher(js)), nc, stop))
    try:
        for _ in range(100):
            if await counter(db) == 3:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert await counter(db) == 3
    assert seen_traces == [trace_id] * 3  # the consumer's span continues the producer's trace
    spans = [sp for sp in exported.get_finished_spans()
             if format(sp.context.trace_id, "032x") == trace_id]
    publishes = {sp.context.span_id: sp for sp in spans if sp.name.startswith("publish ")}
    consumes = [sp for sp in spans if sp.name.startswith("consume ")]
    assert len(consumes) == 3
    if not publish_spans:
        # request → consume: one span a hop, each consume span a child of the span that
        # staged its message
        assert publishes == {}
        assert all(sp.parent is not None and sp.parent.span_id == request_span_id
                   for sp in consumes)
        return
    assert len(publishes) == 3
    assert all(sp.kind == trace.SpanKind.PRODUCER for sp in publishes.values())
    # request → publish (relay) → consume: each consume span is a child of a publish span
    assert all(sp.parent is not None and sp.parent.span_id in publishes for sp in consumes)
    assert all(sp.parent is not None and sp.parent.span_id == request_span_id
               for sp in publishes.values())


async def test_relay_survives_broker_outage_and_delivers_everything(
        db: Database, fresh_database: str) -> None:
    broker = InMemoryBroker(fail_publishes=3)
    metrics = MessagingMetrics(CollectorRegistry())
    relay = OutboxRelay(fresh_database, broker, poll_interval_s=0.05, metrics=metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await produce(db, "toy", 7)
    for _ in range(200):
        if len(broker.messages) == 7 and await unpublished(db) == 0:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert len(broker.messages) == 7 and await unpublished(db) == 0
    assert metrics.publish_errors._value.get() == 3


async def test_a_malformed_message_is_dead_lettered_on_its_first_delivery(
        db: Database) -> None:
    dead = InMemoryBroker()
    spec = ConsumerSpec("toy-counter", "TOY_EVENTS", ["toy.events.>"],
                        {"Incremented.v1": increment}, max_deliver=3)
    consumer = InboxConsumer(spec, db, dead)
    poison = MemoryDelivery("toy.events.incremented",
                            {"Nats-Msg-Id": str(uuid.uuid4()), H_TYPE: "Incremented.v1"},
                            b"{not json", sequence=1)
    assert await consumer.process(poison) == Outcome.DEAD_LETTERED
    assert poison.state == "acked"
    [letter] = dead.messages
    assert letter.subject == "dlq.toy-counter" and letter.payload == b"{not json"
    assert "not JSON" in letter.headers[H_DLQ_ERROR]
    assert letter.headers[H_DLQ_DELIVERIES] == "1"

    # A payload the handler's own contract rejects, inside a batch with a good message:
    # the good one is handled, the bad one dead-lettered without a retry.
    async def strict(session: AsyncSession, env: Envelope) -> None:
        if not isinstance(env.payload.get("by"), int):
            raise PoisonMessage("Incremented.v1: invalid payload")
        await increment(session, env)

    batch_consumer = InboxConsumer(ConsumerSpec("toy-strict", "TOY_EVENTS", ["toy.events.>"],
                                                {"Incremented.v1": strict}), db, dead)
    good, bad = (MemoryDelivery("toy.events.incremented",
                                {"Nats-Msg-Id": str(uuid.uuid4()), H_TYPE: "Incremented.v1",
                                 "Mercato-Message-Id": str(uuid.uuid4())},
                                orjson.dumps({"counter": "hits", "by": by}), sequence=seq)
                 for seq, by in ((2, 1), (3, "one")))
    outcomes = await batch_consumer.process_batch([good, bad])
    assert outcomes == [Outcome.HANDLED, Outcome.DEAD_LETTERED]
    assert good.state == bad.state == "acked" and len(dead.messages) == 2
    assert await counter(db) == 1


async def test_an_unknown_message_type_is_retried_then_dead_lettered(db: Database) -> None:
    """Another instance of a newer release may know the type: no dead letter at once."""
    dead = InMemoryBroker()
    spec = ConsumerSpec("toy-counter", "TOY_EVENTS", ["toy.events.>"],
                        {"Incremented.v1": increment}, max_deliver=3)
    consumer = InboxConsumer(spec, db, dead)
    unknown = MemoryDelivery("toy.events.incremented",
                             {"Nats-Msg-Id": str(uuid.uuid4()), H_TYPE: "Incremented.v9"},
                             orjson.dumps({"counter": "hits", "by": 1}), sequence=2)
    assert await consumer.process(unknown) == Outcome.RETRY
    assert unknown.state == "naked" and unknown.nak_delay
    again = unknown.redelivered()
    assert await consumer.process(again) == Outcome.RETRY
    last = again.redelivered()
    assert await consumer.process(last) == Outcome.DEAD_LETTERED and last.state == "acked"
    [letter] = dead.messages
    assert "no handler" in letter.headers[H_DLQ_ERROR]
    assert await counter(db) == 0


async def test_dead_letter_stream_exists_after_declaration(js: JetStreamContext) -> None:
    await ensure_dead_letter_stream(js)
    info = await js.stream_info(DEAD_LETTER_STREAM)
    assert info.config.subjects == ["dlq.>"]


async def test_two_relays_share_the_backlog_without_double_publishing(
        db: Database, fresh_database: str) -> None:
    broker = InMemoryBroker()
    await produce(db, "toy", 2000)
    one = OutboxRelay(fresh_database, broker, batch_size=100)
    two = OutboxRelay(fresh_database, broker, batch_size=100)

    async def drain(relay: OutboxRelay) -> None:
        while await relay.relay_once():
            pass

    await asyncio.gather(drain(one), drain(two))
    await one.close()
    await two.close()
    ids = [m.headers["Mercato-Message-Id"] for m in broker.messages]
    assert len(ids) == 2000 and len(set(ids)) == 2000
    conn = await asyncpg.connect(asyncpg_dsn(fresh_database))
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
    await conn.close()


async def test_a_batch_commits_together_and_a_failure_isolates_the_bad_message(
        db: Database) -> None:
    broker = InMemoryBroker()
    await produce_direct(broker, 6)
    calls = 0

    async def flaky(session: AsyncSession, env: Envelope) -> None:
        nonlocal calls
        calls += 1
        if env.payload["counter"] == "bad":
            raise RuntimeError("handler bug")
        await increment(session, env)

    consumer = InboxConsumer(ConsumerSpec("toy-batch", "TOY_EVENTS", ["toy.events.>"],
                                          {"Incremented.v1": flaky}), db, broker)
    deliveries = broker.deliveries("toy.events.>")
    deliveries.append(deliveries[0])  # the same delivery twice in one batch
    outcomes = await consumer.process_batch(deliveries)
    assert outcomes == [Outcome.HANDLED] * 6 + [Outcome.DUPLICATE]
    assert await counter(db) == 6

    await produce_direct(broker, 3, bad_at=1)
    batch = broker.deliveries("toy.events.>")[6:]
    outcomes = await consumer.process_batch(batch)
    assert outcomes == [Outcome.HANDLED, Outcome.RETRY, Outcome.HANDLED]
    assert batch[1].state == "naked" and batch[0].state == batch[2].state == "acked"
    assert await counter(db) == 8


async def produce_direct(broker: InMemoryBroker, n: int, bad_at: int | None = None) -> None:
    from chassis.messaging.broker import Outgoing

    for i in range(n):
        env = Envelope.new("toy.events.incremented", "Incremented.v1",
                           {"counter": "bad" if i == bad_at else "hits", "by": 1})
        await broker.publish_batch([Outgoing(env.subject, env.body(), env.headers())])


async def test_one_messages_claim_goes_with_its_begin_and_a_repeat_is_a_duplicate(
        db: Database, pg_server: PgServer) -> None:
    # One round trip fewer per message (ADR 0049): the claim's row count is its answer.
    name = db.engine.url.database
    assert name is not None
    broker = InMemoryBroker()
    await produce_direct(broker, 1)
    with pg_server.statements_logged(name) as logged:
        one = Database(db.engine.url.render_as_string(hide_password=False), pool_size=1)
        try:
            consumer = InboxConsumer(ConsumerSpec("toy-one", "TOY_EVENTS", ["toy.events.>"],
                                                  {"Incremented.v1": increment}), one, broker)
            delivery = broker.deliveries("toy.events.>")[0]
            assert await consumer.process(delivery) == Outcome.HANDLED
            assert await consumer.process(delivery) == Outcome.DUPLICATE
        finally:
            await one.dispose()
        sent = [s.split(": ", 1)[1] for s in logged()]
    assert await counter(db) == 1
    claims = [s for s in sent if "INSERT INTO inbox" in s]
    assert len(claims) == 2 and all(c.startswith("BEGIN; INSERT INTO inbox") for c in claims), \
        sent
    assert not any(s.rstrip(";") == "BEGIN" for s in sent[sent.index(claims[0]):]), sent


async def test_a_batch_is_handled_in_correlation_order_keeping_each_sagas_order(
        db: Database) -> None:
    from chassis.messaging.broker import Outgoing

    broker = InMemoryBroker()
    for corr, step in (("saga-b", 1), ("saga-a", 1), ("saga-b", 2), ("saga-a", 2)):
        env = Envelope.new("toy.events.incremented", "Incremented.v1",
                           {"counter": "hits", "by": 1, "step": f"{corr}/{step}"},
                           correlation_id=corr)
        await broker.publish_batch([Outgoing(env.subject, env.body(), env.headers())])
    seen: list[str] = []

    async def record(session: AsyncSession, env: Envelope) -> None:
        seen.append(env.payload["step"])

    consumer = InboxConsumer(ConsumerSpec("toy-order", "TOY_EVENTS", ["toy.events.>"],
                                          {"Incremented.v1": record}), db, broker)
    assert await consumer.process_batch(broker.deliveries("toy.events.>")) == [
        Outcome.HANDLED] * 4
    # Rows keyed by saga are locked in one order by every batch: no deadlock between two.
    assert seen == ["saga-a/1", "saga-a/2", "saga-b/1", "saga-b/2"]


# -- outbox rows are written at commit (chassis.db.write_at_commit): with the transaction's
# state change, in staging order, never after a rollback; a savepoint's rows go with it.

async def outbox_subjects(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        return list((await conn.execute(text("SELECT subject FROM outbox ORDER BY id")))
                    .scalars())


async def test_staged_rows_are_written_at_commit_in_staging_order(db: Database) -> None:
    async with db.unit_of_work() as uow:
        for n in range(5):
            await stage_message(uow.session, f"t.events.e{n}", "E.v1", {"n": n})
        # Not written yet: one statement writes them all just before COMMIT.
        assert (await uow.session.execute(text("SELECT count(*) FROM outbox"))).scalar() == 0
        await uow.commit()
    assert await outbox_subjects(db) == [f"t.events.e{n}" for n in range(5)]


async def test_a_rolled_back_transaction_leaves_no_row_behind(db: Database) -> None:
    async with db.unit_of_work() as uow:
        await stage_message(uow.session, "t.events.lost", "E.v1", {})
        await uow.rollback()
        await stage_message(uow.session, "t.events.kept", "E.v1", {})
        await uow.commit()
    async with db.unit_of_work() as uow:  # left without commit: rolled back
        await stage_message(uow.session, "t.events.abandoned", "E.v1", {})
    assert await outbox_subjects(db) == ["t.events.kept"]


async def test_a_savepoint_rolls_back_its_own_rows_and_keeps_the_outer_ones(
        db: Database) -> None:
    async with db.unit_of_work() as uow:
        await stage_message(uow.session, "t.events.before", "E.v1", {})
        with pytest.raises(RuntimeError):
            async with uow.session.begin_nested():
                await stage_message(uow.session, "t.events.inside", "E.v1", {})
                raise RuntimeError("the savepoint's work fails")
        async with uow.session.begin_nested():
            await stage_message(uow.session, "t.events.inside_ok", "E.v1", {})
        await stage_message(uow.session, "t.events.after", "E.v1", {})
        await uow.commit()
    assert sorted(await outbox_subjects(db)) == sorted(
        ["t.events.before", "t.events.inside_ok", "t.events.after"])


class _Base(DeclarativeBase):
    pass


class _Counter(_Base):  # the counters table, mapped for the ORM session's test
    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(primary_key=True)
    value: Mapped[int]


async def test_a_unit_of_work_is_one_connection_and_its_orm_session_shares_the_transaction(
        db: Database) -> None:
    # ADR 0044: handlers get the connection (Core statements, no ORM bookkeeping); a
    # service that maps rows to classes takes uow.orm(), in the same transaction.
    async with db.unit_of_work() as uow:
        assert isinstance(uow.session, AsyncConnection)
        orm = await uow.orm()
        orm.add(_Counter(name="kept", value=1))
        await orm.flush()
        await stage_message(uow.session, "t.events.kept", "E.v1", {})
        await uow.commit()
    async with db.unit_of_work() as uow:  # left without commit: both go
        orm = await uow.orm()
        orm.add(_Counter(name="abandoned", value=1))
        await orm.flush()
        await stage_message(uow.session, "t.events.abandoned", "E.v1", {})
    async with db.unit_of_work() as uow:
        kept = await (await uow.orm()).get(_Counter, "kept")
        assert kept is not None and kept.value == 1
        assert await (await uow.orm()).get(_Counter, "abandoned") is None
    assert await outbox_subjects(db) == ["t.events.kept"]


async def test_statements_on_asyncpg_directly_are_in_the_unit_of_works_transaction(
        db: Database) -> None:
    # ADR 0045: the inbox claim and the saga's load and save skip SQLAlchemy's execution
    # path. First in a transaction, they still begin it; they commit and roll back with it.
    insert = "INSERT INTO counters (name, value) VALUES ($1, 1)"
    async with db.unit_of_work() as uow:
        assert await driver_execute(uow.session, insert, "kept") == 1
        await stage_message(uow.session, "t.events.kept", "E.v1", {})
        await uow.commit()
    async with db.unit_of_work() as uow:  # left without commit: rolled back
        await driver_execute(uow.session, insert, "abandoned")
    async with db.unit_of_work() as uow:
        await uow.session.execute(text("INSERT INTO counters (name, value) VALUES ('outer', 1)"))
        with pytest.raises(RuntimeError):
            async with uow.session.begin_nested():
                await driver_execute(uow.session, insert, "in a rolled back savepoint")
                raise RuntimeError("the savepoint's work fails")
        await uow.commit()
    async with db.unit_of_work() as uow:
        rows = await driver_fetch(uow.session, "SELECT name FROM counters ORDER BY name")
    assert [r["name"] for r in rows] == ["kept", "outer"]
    assert await outbox_subjects(db) == ["t.events.kept"]
    # Their errors are SQLAlchemy's, as chassis.errors maps them (409, 503), not asyncpg's.
    async with db.unit_of_work() as uow:
        with pytest.raises(IntegrityError):
            await driver_execute(uow.session, insert, "kept")


async def test_a_commit_on_asyncpg_ends_both_transactions_and_fails_as_sqlalchemy_would(
        db: Database) -> None:
    # ADR 0047: the unit of work commits on asyncpg and ends SQLAlchemy's transaction without
    # a round trip. A constraint checked at COMMIT still fails as an IntegrityError, and
    # nothing of that transaction stays; the connection serves the next unit of work.
    insert = "INSERT INTO counters (name, value) VALUES ($1, 1)"
    async with db.unit_of_work() as uow:
        await driver_execute(uow.session, insert, "committed")
        await uow.commit()
        assert not uow.session.in_transaction()
        await uow.session.execute(text("INSERT INTO counters (name, value) VALUES ('next', 1)"))
        await uow.commit()  # a second transaction on the same connection, Core this time
    async with db.unit_of_work() as uow:
        await driver_execute(uow.session, "SET CONSTRAINTS ALL DEFERRED")
        await driver_execute(
            uow.session, "CREATE TEMP TABLE once (id int UNIQUE DEFERRABLE) ON COMMIT DROP")
        await driver_execute(uow.session, "INSERT INTO once VALUES (1), (1)")
        await driver_execute(uow.session, insert, "lost with the failed commit")
        with pytest.raises(IntegrityError):
            await uow.commit()
    async with db.unit_of_work() as uow:
        rows = await driver_fetch(uow.session, "SELECT name FROM counters ORDER BY name")
    assert [r["name"] for r in rows] == ["committed", "next"]


async def test_a_connection_lost_under_a_statement_on_asyncpg_is_replaced(db: Database) -> None:
    # A restarted PostgreSQL kills every pooled connection. SQLAlchemy's own path drops a
    # lost one; statements past it must too, or a consumer whose first statement is the
    # inbox claim would get the dead connection back from the pool on every message.
    url = db.engine.url.render_as_string(hide_password=False)
    one = Database(url, pool_size=1)
    try:
        async with one.unit_of_work() as uow:
            pid = (await driver_fetch(uow.session, "SELECT pg_backend_pid() AS pid"))[0]["pid"]
            await uow.commit()
        async with db.unit_of_work() as uow:
            await driver_fetch(uow.session, "SELECT pg_terminate_backend($1)", pid)
        async with one.unit_of_work() as uow:
            with pytest.raises(DBAPIError) as lost:
                await driver_fetch(uow.session, "SELECT 1")
        assert lost.value.connection_invalidated  # chassis.errors answers it with a 503
        async with one.unit_of_work() as uow:
            rows = await driver_fetch(uow.session, "SELECT pg_backend_pid() AS pid")
            await uow.commit()
        assert rows[0]["pid"] != pid
    finally:
        await one.dispose()


async def test_an_orm_session_outside_a_unit_of_work_writes_its_staged_rows_at_commit(
        db: Database) -> None:
    # The same statements, as SQLAlchemy text, from the ORM session's before_commit event.
    async with db.sessions() as session:
        await stage_message(session, "t.events.from_a_session", "E.v1", {"n": 1})
        await session.commit()
    async with db.sessions() as session:  # closed without commit: nothing
        await stage_message(session, "t.events.abandoned", "E.v1", {})
    assert await outbox_subjects(db) == ["t.events.from_a_session"]


async def test_the_commit_sends_one_notify_for_the_relay(db: Database,
                                                         fresh_database: str) -> None:
    from chassis.messaging.tables import OUTBOX_CHANNEL

    listener = await asyncpg.connect(asyncpg_dsn(fresh_database))
    heard: list[str] = []
    await listener.add_listener(OUTBOX_CHANNEL, lambda *args: heard.append(args[2]))
    try:
        async with db.unit_of_work() as uow:
            await stage_message(uow.session, "t.events.a", "E.v1", {})
            await stage_message(uow.session, "t.events.b", "E.v1", {})
            await uow.commit()
        await listener.execute("SELECT 1")  # let the notification arrive
        assert heard == [OUTBOX_CHANNEL]
    finally:
        await listener.close()


def handled_id(at: datetime) -> uuid.UUID:
    """A UUIDv7 made at ``at`` (the timestamp in its first 48 bits), like new_message_id's."""
    return uuid.UUID(int=uuid7_floor(at).int | (0x7 << 76) | random.getrandbits(62))


async def inbox_rows(db: Database) -> set[tuple[str, uuid.UUID]]:
    async with db.engine.connect() as conn:
        return {(r[0], r[1]) for r in await conn.execute(
            text("SELECT consumer, message_id FROM inbox"))}


async def add_inbox_rows(db: Database, rows: list[tuple[str, uuid.UUID, datetime]]) -> None:
    async with db.engine.begin() as conn:
        for consumer, message_id, handled_at in rows:
            await conn.execute(text(
                "INSERT INTO inbox (consumer, message_id, message_type, handled_at) "
                "VALUES (:c, :m, 'X.v1', :h)"), {"c": consumer, "m": message_id, "h": handled_at})


async def test_the_inbox_purge_forgets_only_what_no_copy_can_come_back_for(
        db: Database) -> None:
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=40), now - timedelta(days=1)
    expired = [("toy-a", handled_id(old - timedelta(minutes=i)), old) for i in range(5)]
    kept = [
        ("toy-a", handled_id(recent), recent),
        # an old message handled only lately (a dead-letter replay): kept 35 days from then
        ("toy-a", handled_id(old), recent),
        # another service's consumer sharing nothing with this one
        ("toy-other", handled_id(old), old),
    ]
    await add_inbox_rows(db, expired + kept)
    assert await purge_inbox(db, ["toy-a"], now=now, batch=2) == 5
    assert await inbox_rows(db) == {(c, m) for c, m, _ in kept}
    assert await purge_inbox(db, ["toy-a"], now=now) == 0
    # The retention outlives every way a copy can come back: the dead-letter stream's 30 days.
    assert INBOX_RETENTION > timedelta(seconds=DEAD_LETTER_MAX_AGE_S)


async def test_a_service_with_consumers_purges_its_inbox_while_it_runs(
        db: Database, fresh_database: str) -> None:
    """The app runs the purge as its background task "inbox-purge" (the database is all it
    needs: no broker here)."""
    from typing import ClassVar

    from chassis.app import create_service_app
    from chassis.settings import ServiceSettings
    from fastapi.testclient import TestClient

    class ToySettings(ServiceSettings):
        service_name: ClassVar[str] = "toy"

    old = datetime.now(UTC) - timedelta(days=40)
    spec = ConsumerSpec("toy-purged", "TOY_EVENTS", ["toy.events.>"],
                        {"Incremented.v1": increment})
    await add_inbox_rows(db, [("toy-purged", handled_id(old), old)])
    app = create_service_app(
        ToySettings(database_url=fresh_database, nats_url=""), routers=[],
        messaging=Messaging(consumers=[spec], inbox_purge_interval_s=0.05))
    with TestClient(app) as client:
        for _ in range(100):
            if not await inbox_rows(db):
                break
            await asyncio.sleep(0.05)
        assert await inbox_rows(db) == set()
        assert 'task="inbox-purge"' in client.get("/metrics").text
