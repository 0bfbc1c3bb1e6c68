"""Rebuild against a real NATS JetStream: replaying the producers' streams reproduces the
rows the live consumers built, whatever was in the view before."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from chassis.db import Database
from chassis.messaging.envelope import H_NATS_MSG_ID, Envelope
from chassis.messaging.streams import ensure_stream
from contracts.orders.v1 import OrderApproved
from contracts.payments.v1 import PaymentCaptured
from nats.js import JetStreamContext
from order_history.adapters.repository import OrderViewRepository
from order_history.entrypoints.cli import rebuild, replay_stream
from order_history.entrypoints.consumers import CONSUMERS, consumer_specs
from order_history_kit import History, envelope, life, refunded_cancel
from sqlalchemy import text

pytestmark = pytest.mark.integration

STREAMS = {"ORDERS_EVENTS": "orders", "PAYMENTS_EVENTS": "payments",
           "SHIPPING_EVENTS": "shipping"}


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url)
    try:
        context = nc.jetstream()
        for stream, producer in STREAMS.items():
            await ensure_stream(context, stream, [f"{producer}.events.>"])
        yield context
    finally:
        await nc.close()


def scenario() -> tuple[list[str], list[Envelope]]:
    """Three orders' events, shuffled across the streams, plus one event published again by a
    dead-letter replay: a fresh broker id but the same message id (the inbox's key)."""
    ids = [f"rb-{uuid.uuid4().hex[:12]}" for _ in range(3)]
    events = [*life(ids[0]), *refunded_cancel(ids[1], "bob"), *life(ids[2])[:3],
              PaymentCaptured(payment_id="p-late", order_id=ids[2], amount="99",
                              currency="KRW")]
    envelopes = [envelope(e) for e in events]
    random.Random(11).shuffle(envelopes)
    return ids, envelopes


async def publish(js: JetStreamContext, envelopes: list[Envelope]) -> None:
    for env in envelopes:
        await js.publish(env.subject, env.body(), headers=env.headers(), timeout=5)
    replayed = envelopes[0]
    await js.publish(replayed.subject, replayed.body(),
                     headers={**replayed.headers(), H_NATS_MSG_ID: f"dlq-{uuid.uuid4()}"})


async def expected_rows(db: Database, ids: list[str], envelopes: list[Envelope]) -> dict:
    """The rows the live consumers build from the same events (sent in publish order)."""
    h = History(db)
    for env in envelopes:
        assert await h.send(env) == "handled"
    return await h.rows(*ids)


async def test_rebuild_reproduces_the_rows_the_consumers_built(db: Database,
                                                                js: JetStreamContext) -> None:
    ids, envelopes = scenario()
    await publish(js, envelopes)
    expected = await expected_rows(db, ids, envelopes)
    assert len(expected) == 3
    # Damage the view: a row no event supports, and a row set back.
    async with db.engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO order_view (order_id, customer_id, status, last_event_at) "
            "VALUES ('ghost', 'alice', 'APPROVED', now())"))
        await conn.execute(text("UPDATE order_view SET status = 'PENDING', "
                                "amount_captured = 1 WHERE order_id = :o"), {"o": ids[0]})
    h = History(db)

    report = await rebuild(db, js, idle_timeout_s=2.0)
    assert await h.rows(*ids) == expected
    assert await h.row("ghost") is None
    by_stream = {s.stream: s for s in report.streams}
    assert set(by_stream) == set(STREAMS)
    mine = {"ORDERS_EVENTS": 0, "PAYMENTS_EVENTS": 0, "SHIPPING_EVENTS": 0}
    for env in envelopes:
        mine[{"orders": "ORDERS_EVENTS", "payments": "PAYMENTS_EVENTS",
              "shipping": "SHIPPING_EVENTS"}[env.subject.split(".")[0]]] += 1
    for stream, s in by_stream.items():
        # The streams are shared with other tests of the session: at least ours came back.
        assert s.found and s.handled >= mine[stream], s
        assert s.messages == s.handled + s.duplicates + s.failed
        assert s.last_sequence >= s.messages
    # The republished dead letter was recognised by its message id and skipped.
    assert sum(s.duplicates for s in report.streams) >= 1
    assert report.rows >= 3 and report.as_dict()["rows"] == report.rows

    # Running it again gives the same rows (it starts from empty every time).
    await rebuild(db, js, idle_timeout_s=2.0)
    assert await h.rows(*ids) == expected


async def test_the_live_consumer_and_a_replay_never_double_an_effect(
        db: Database, js: JetStreamContext) -> None:
    ids, envelopes = scenario()
    await publish(js, envelopes)
    expected = await expected_rows(db, ids, envelopes)
    async with db.unit_of_work() as uow:
        await OrderViewRepository(uow.session).clear(list(CONSUMERS))
        await uow.commit()
    # The durable payments consumer handles some events after the view was emptied ...
    h = History(db)
    payments = [e for e in envelopes if e.subject.startswith("payments.")]
    for env in payments:
        await h.send(env)
    # ... and the replay of that stream meets them: skipped through the inbox.
    [orders_spec, payments_spec, shipping_spec] = consumer_specs()
    report = await replay_stream(payments_spec, db, js, idle_timeout_s=2.0)
    assert report.duplicates >= len(payments)
    for spec in (orders_spec, shipping_spec):
        await replay_stream(spec, db, js, idle_timeout_s=2.0)
    assert await h.rows(*ids) == expected


async def test_a_rebuild_replays_what_the_live_consumers_skip(db: Database,
                                                                js: JetStreamContext) -> None:
    """An order approved before OrderApproved carried the tracking number (ADR 0039): the
    live consumers skip ShipmentCreated, but a rebuild replays whole streams and finds it."""
    order_id = f"rb-old-{uuid.uuid4().hex[:8]}"
    placed, authorized, created, captured, _new_style, _dispatched = life(order_id)
    old_style = OrderApproved(order_id=order_id, customer_id="alice", total="30000",
                              currency="KRW")
    await publish(js, [envelope(e) for e in (placed, authorized, created, captured,
                                               old_style)])
    await rebuild(db, js, idle_timeout_s=2.0)
    row = await History(db).row(order_id)
    assert row is not None
    assert (row["status"], row["payment_status"], row["shipment_status"],
            row["tracking_number"]) == ("APPROVED", "CAPTURED", "CREATED",
                                        f"MS{order_id[:8].upper()}")


async def test_a_missing_stream_is_reported_not_fatal(db: Database,
                                                      js: JetStreamContext) -> None:
    [orders_spec, *_] = consumer_specs()
    orders_spec.stream = "NO_SUCH_EVENTS"
    report = await replay_stream(orders_spec, db, js, idle_timeout_s=0.5)
    assert (report.found, report.messages) == (False, 0)


def test_the_rebuild_command(database_url: str, nats_url: str) -> None:
    env = {**os.environ, "ORDER_HISTORY_DATABASE_URL": database_url,
           "ORDER_HISTORY_NATS_URL": nats_url, "ORDER_HISTORY_LOG_LEVEL": "warning"}
    done = subprocess.run([sys.executable, "-m", "order_history", "rebuild"], env=env,
                          capture_output=True, text=True, timeout=60)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    failed = sum(s["failed"] for s in report["streams"])
    assert done.returncode == (1 if failed else 0), done.stderr
    assert {s["stream"] for s in report["streams"]} == set(STREAMS)
    assert report["rows"] >= 0
    bad = subprocess.run([sys.executable, "-m", "order_history", "rebuilt"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "usage" in bad.stderr
