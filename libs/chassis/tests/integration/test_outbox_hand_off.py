"""Publishing at commit (ADR 0042), against a real PostgreSQL (and NATS for the runtime).

A service's messaging runtime hands the relay what its sessions commit: published at once,
marked by message id, no NOTIFY. The relay's own pass is what remains for rows a hand-off
never published (the process died after its commit, the broker refused the publish): it
takes them once they have been unpublished for the grace period.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import nats
import pytest
from chassis.db import Database
from chassis.messaging.envelope import H_MESSAGE_ID
from chassis.messaging.memory import InMemoryBroker
from chassis.messaging.metrics import MessagingMetrics
from chassis.messaging.outbox import hand_off_after_commit, stage_message
from chassis.messaging.relay import OutboxRelay, asyncpg_dsn
from chassis.messaging.runtime import Messaging, MessagingRuntime, StreamSpec
from chassis.messaging.tables import OUTBOX_CHANNEL, outbox_table
from chassis.testing import metadata_database_fixture
from prometheus_client import CollectorRegistry
from sqlalchemy import MetaData, text

pytestmark = pytest.mark.integration

metadata = MetaData()
outbox_table(metadata)


# A hand-off installed on a test's engine goes with it: the registry holds engines weakly.
db = metadata_database_fixture(metadata)


@pytest.fixture
async def notifications(fresh_database: str) -> AsyncIterator[list[str]]:
    """Every NOTIFY on the outbox channel while the test runs."""
    heard: list[str] = []
    conn = await asyncpg.connect(asyncpg_dsn(fresh_database))
    await conn.add_listener(OUTBOX_CHANNEL, lambda *args: heard.append(args[-1]))
    yield heard
    await conn.close()


async def stage(db: Database, n: int, *, commit: bool = True) -> list[uuid.UUID]:
    async with db.unit_of_work() as uow:
        ids = [(await stage_message(uow.session, "toy.events.ticked", "Ticked.v1",
                                    {"n": i})).message_id for i in range(n)]
        if commit:
            await uow.commit()
    return ids


async def unpublished(db: Database) -> int:
    async with db.engine.connect() as conn:
        return (await conn.execute(text(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL"))).scalar_one()


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not reached in time")


def published(metrics: MessagingMetrics, path: str) -> float:
    return metrics.outbox_published.labels(path)._value.get()


def message_ids(broker: InMemoryBroker) -> list[uuid.UUID]:
    return [uuid.UUID(m.headers[H_MESSAGE_ID]) for m in broker.messages]


async def started(relay: OutboxRelay, stop: asyncio.Event) -> asyncio.Task[None]:
    """The relay running, its first pass (all that is left at a start, at once) done: a row
    committed during that pass may be published twice, which the broker's duplicate window
    drops in production and these tests would count."""
    task = asyncio.create_task(relay.run(stop))
    await asyncio.sleep(0.2)
    return task


# Timed passes a minute apart that take only rows a minute old: none in a test.
NO_TIMED_PASS = {"poll_interval_s": 60.0, "left_poll_interval_s": 60.0, "grace_s": 60.0}


def relay_of(url: str, broker: InMemoryBroker, **kwargs: float) -> tuple[OutboxRelay,
                                                                           MessagingMetrics]:
    metrics = MessagingMetrics(CollectorRegistry())
    relay = OutboxRelay(url, broker, metrics=metrics, **kwargs)
    relay.accept_hand_offs()
    return relay, metrics


async def test_what_a_process_commits_it_publishes_itself_in_order_without_a_notify(
        db: Database, fresh_database: str, notifications: list[str]) -> None:
    broker = InMemoryBroker()
    # Timed passes far apart and a long grace: only the hand-off can publish in this test.
    relay, metrics = relay_of(fresh_database, broker, **NO_TIMED_PASS)
    hand_off_after_commit(db.engine, relay)
    stop = asyncio.Event()
    task = await started(relay, stop)
    first = await stage(db, 3)
    second = await stage(db, 2)

    async def all_marked() -> bool:
        return len(broker.messages) == 5 and await unpublished(db) == 0
    await until(all_marked)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert message_ids(broker) == first + second
    assert published(metrics, "commit") == 5 and published(metrics, "relay") == 0
    assert notifications == []


async def test_a_rolled_back_transaction_or_savepoint_hands_off_nothing(
        db: Database, fresh_database: str) -> None:
    broker = InMemoryBroker()
    relay, _ = relay_of(fresh_database, broker, **NO_TIMED_PASS)
    hand_off_after_commit(db.engine, relay)
    stop = asyncio.Event()
    task = await started(relay, stop)
    await stage(db, 2, commit=False)
    async with db.unit_of_work() as uow:
        kept = await stage_message(uow.session, "toy.events.ticked", "Ticked.v1", {"n": 0})
        savepoint = await uow.session.begin_nested()
        await stage_message(uow.session, "toy.events.ticked", "Ticked.v1", {"n": 1})
        await savepoint.rollback()
        await uow.commit()

    async def marked() -> bool:
        return await unpublished(db) == 0 and len(broker.messages) >= 1
    await until(marked)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert message_ids(broker) == [kept.message_id]


async def test_what_a_process_committed_and_never_published_is_relayed_after_the_grace(
        db: Database, fresh_database: str) -> None:
    # The process that commits dies before its hand-off runs: its relay never starts.
    dead_broker = InMemoryBroker()
    dead, _ = relay_of(fresh_database, dead_broker)
    hand_off_after_commit(db.engine, dead)
    # A sibling (or the restarted process) runs its relay's passes.
    broker = InMemoryBroker()
    sibling, metrics = relay_of(fresh_database, broker, left_poll_interval_s=0.05, grace_s=1.5)
    stop = asyncio.Event()
    task = await started(sibling, stop)
    ids = await stage(db, 2)
    await asyncio.sleep(0.5)
    assert broker.messages == [], "taken before its grace: the committing process may " \
                                  "be publishing it right now"

    async def relayed() -> bool:
        return len(broker.messages) == 2 and await unpublished(db) == 0
    await until(relayed)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert message_ids(broker) == ids and dead_broker.messages == []
    assert published(metrics, "relay") == 2 and published(metrics, "commit") == 0


async def test_after_a_refused_hand_off_the_relay_publishes_in_order_until_caught_up(
        db: Database, fresh_database: str) -> None:
    broker = InMemoryBroker(fail_publishes=2)  # the hand-off, then the first pass
    relay, metrics = relay_of(fresh_database, broker, **NO_TIMED_PASS)
    hand_off_after_commit(db.engine, relay)
    stop = asyncio.Event()
    task = await started(relay, stop)
    refused = await stage(db, 2)
    for _ in range(100):  # the refusal has stopped the hand-offs
        if metrics.publish_errors._value.get() >= 1:
            break
        await asyncio.sleep(0.01)
    committed_later = await stage(db, 2)

    async def caught_up() -> bool:
        return len(broker.messages) == 4 and await unpublished(db) == 0
    await until(caught_up)
    # Not after what committed later, though the passes wait 60 s and the grace is 60 s: the
    # refusal woke them, and they took everything, in id order.
    assert message_ids(broker) == refused + committed_later
    assert published(metrics, "relay") == 4 and published(metrics, "commit") == 0
    assert metrics.publish_errors._value.get() == 2
    # Caught up: hand-offs again.
    again = await stage(db, 1)

    async def handed_off() -> bool:
        return published(metrics, "commit") == 1 and await unpublished(db) == 0
    await until(handed_off)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert message_ids(broker)[4:] == again


async def test_a_stop_publishes_and_marks_what_was_handed_off(
        db: Database, fresh_database: str) -> None:
    broker = InMemoryBroker()
    relay, _ = relay_of(fresh_database, broker, **NO_TIMED_PASS,
                        mark_interval_s=60)
    hand_off_after_commit(db.engine, relay)
    stop = asyncio.Event()
    task = await started(relay, stop)
    ids = await stage(db, 4)
    stop.set()  # before the hand-off loop has had a turn
    await asyncio.wait_for(task, 10)
    assert message_ids(broker) == ids
    assert await unpublished(db) == 0  # marked at the stop, not a minute later


async def test_a_tool_without_a_hand_off_still_wakes_the_relay(
        db: Database, fresh_database: str, notifications: list[str]) -> None:
    broker = InMemoryBroker()
    relay = OutboxRelay(fresh_database, broker, poll_interval_s=60)
    stop = asyncio.Event()
    task = await started(relay, stop)
    ids = await stage(db, 2)

    async def relayed() -> bool:
        return len(broker.messages) == 2
    await until(relayed)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert message_ids(broker) == ids and len(notifications) == 1


async def test_a_service_runtime_publishes_its_commits_itself(
        db: Database, fresh_database: str, nats_url: str) -> None:
    spec = Messaging(streams=[StreamSpec("TOY_TICKS", ["toy.events.>"])], outbox=True)
    metrics = MessagingMetrics(CollectorRegistry())
    runtime = MessagingRuntime(spec, db, fresh_database, metrics)
    nc = await nats.connect(nats_url)
    try:
        await runtime.start(nc)
        assert runtime.relay is not None
        runtime.relay.grace_s = 60  # nothing for the timed passes in this test
        await asyncio.sleep(0.1)
        ids = await stage(db, 3)

        async def marked() -> bool:
            return await unpublished(db) == 0
        await until(marked)
        assert published(metrics, "commit") == 3
        info = await nc.jetstream().stream_info("TOY_TICKS")
        assert info.state.messages == 3
        await runtime.stop()
        # Stopped: a later commit is left to the relay (woken by NOTIFY) of the next start.
        later = await stage(db, 1)
        assert await unpublished(db) == 1
    finally:
        await nc.close()
    assert ids and later


async def test_marks_and_timed_passes_are_few_while_hand_offs_run(
        db: Database, fresh_database: str) -> None:
    # ADR 0043: each mark and each timed pass is a statement whatever it carries. Marks
    # gather what a second published; a timed pass comes every 5 s, not every second.
    broker = InMemoryBroker()
    relay, _ = relay_of(fresh_database, broker)  # the defaults a service runs with
    hand_off_after_commit(db.engine, relay)
    marks: list[int] = []
    passes: list[float] = []
    mark, relay_once = relay._mark_handed_off, relay.relay_once

    async def counted_mark(message_ids: list[uuid.UUID]) -> None:
        marks.append(len(message_ids))
        await mark(message_ids)

    async def counted_pass(grace_s: float = 0.0) -> int:
        passes.append(grace_s)
        return await relay_once(grace_s)
    relay._mark_handed_off = counted_mark  # type: ignore[method-assign]
    relay.relay_once = counted_pass  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = await started(relay, stop)
    ids = []
    for _ in range(10):  # ten transactions over ~0.3 s, each published at once
        ids += await stage(db, 1)
        await asyncio.sleep(0.02)

    async def all_published() -> bool:
        return len(broker.messages) == 10

    async def all_marked() -> bool:
        return sum(marks) == 10
    await until(all_published)
    assert await unpublished(db) == 10, "marked before the mark interval"
    await until(all_marked, seconds=3)
    assert len(marks) <= 2, f"one mark per interval, not per publish: {marks}"
    await asyncio.sleep(1.5)
    assert passes == [0.0], f"a timed pass within 2.5 s of the first one: {passes}"
    stop.set()
    await asyncio.wait_for(task, 10)
    assert message_ids(broker) == ids and await unpublished(db) == 0
