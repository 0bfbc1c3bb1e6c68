"""The saga engine on real PostgreSQL, with an in-memory broker standing in for the services.

Commands leave through the outbox and relay into the broker; the test plays inventory,
payments and shipping by reading those commands and delivering their events to the
orchestrator's inbox consumer, exactly as JetStream would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from chassis.background import BackgroundTasks
from chassis.db import Database
from chassis.logging import configure_logging
from chassis.messaging.broker import Outgoing
from chassis.messaging.consumer import ConsumerSpec, InboxConsumer, Outcome
from chassis.messaging.envelope import H_CAUSATION, H_CORRELATION, H_TYPE, Envelope
from chassis.messaging.memory import InMemoryBroker, MemoryDelivery
from chassis.messaging.metrics import MessagingMetrics
from chassis.messaging.relay import OutboxRelay
from chassis.messaging.tables import inbox_table, outbox_table
from chassis.saga import (
    SagaDefinition,
    SagaEngine,
    Status,
    Step,
    history,
    reconciler,
    saga_tables,
)
from chassis.testing import ManualClock, metadata_database_fixture
from contracts.base import Event
from contracts.inventory.v1 import (
    ReleaseStock,
    ReserveStock,
    StockLine,
    StockReservationFailed,
    StockReserved,
)
from contracts.payments.v1 import (
    AuthorizePayment,
    CapturePayment,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    VoidPayment,
)
from contracts.shipping.v1 import (
    CancelShipment,
    CreateShipment,
    ShipmentCreated,
    ShipmentCreationFailed,
    ShipmentLine,
    ShippingAddress,
)
from prometheus_client import CollectorRegistry
from sqlalchemy import MetaData, text

pytestmark = pytest.mark.integration

metadata = MetaData()
outbox_table(metadata)
inbox_table(metadata)
saga_tables(metadata)

Data = dict[str, Any]
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def address() -> ShippingAddress:
    return ShippingAddress(name="Kim", line1="1 Main", city="Seoul", postal_code="04524",
                           country="KR")


def reserve(d: Data) -> ReserveStock:
    return ReserveStock(reservation_id=d["order_id"], order_id=d["order_id"],
                        lines=[StockLine(sku=sku, quantity=q) for sku, q in d["lines"]])


def release(d: Data) -> ReleaseStock:
    return ReleaseStock(reservation_id=d["order_id"], reason=d["failure"]["reason"])


def authorize(d: Data) -> AuthorizePayment:
    return AuthorizePayment(payment_id=d["payment_id"], order_id=d["order_id"],
                            amount=d["amount"], currency="KRW", card_number=d["card"])


def void(d: Data) -> VoidPayment:
    return VoidPayment(payment_id=d["payment_id"], order_id=d["order_id"])


def ship(d: Data) -> CreateShipment:
    return CreateShipment(shipment_id=d["order_id"], order_id=d["order_id"],
                          customer_id=d["customer_id"], address=address(),
                          lines=[ShipmentLine(sku=sku, quantity=q) for sku, q in d["lines"]])


def cancel_shipment(d: Data) -> CancelShipment:
    return CancelShipment(shipment_id=d["order_id"], order_id=d["order_id"])


def capture(d: Data) -> CapturePayment:
    return CapturePayment(payment_id=d["payment_id"], order_id=d["order_id"])


ORDER = SagaDefinition("order", [
    Step("reserve_stock", reserve, success={"StockReserved.v1": None},
         failure={"StockReservationFailed.v1": None}, compensation=release, deadline_s=10),
    Step("authorize_payment", authorize, success={"PaymentAuthorized.v1": None},
         failure={"PaymentDeclined.v1": None}, compensation=void, deadline_s=10,
         max_resends=2),
    Step("create_shipment", ship,
         success={"ShipmentCreated.v1": lambda d, p: {"tracking": p["tracking_number"]}},
         failure={"ShipmentCreationFailed.v1": lambda d, p: {"reason": f"no ship: {p['reason']}"}},
         compensation=cancel_shipment, deadline_s=10),
    Step("capture_payment", capture, success={"PaymentCaptured.v1": None},
         failure={"PaymentFailed.v1": None}, deadline_s=10),
])


db = metadata_database_fixture(metadata)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def engine(clock: ManualClock) -> SagaEngine:
    return SagaEngine([ORDER], clock=clock)


class Services:
    """The other services, as far as the orchestrator can tell: commands in, events out."""

    def __init__(self, db: Database, url: str, engine: SagaEngine) -> None:
        self.broker = InMemoryBroker()
        self.dead_letters = InMemoryBroker()
        self.metrics = MessagingMetrics(CollectorRegistry())
        self.relay = OutboxRelay(url, self.broker)
        self.consumer = InboxConsumer(
            ConsumerSpec("orders-saga-replies", "X_EVENTS", ["*.events.>"], engine.handlers()),
            db, self.dead_letters, self.metrics)
        self._seen = 0
        self._seq = 0

    async def commands(self) -> list[Outgoing]:
        """What the orchestrator sent since the last call (through outbox and relay)."""
        await self.relay.relay_once()
        fresh = self.broker.messages[self._seen:]
        self._seen = len(self.broker.messages)
        return fresh

    async def reply(self, saga_id: uuid.UUID, event: Event,
                    envelope: Envelope | None = None) -> str:
        envelope = envelope or Envelope.new(event.subject(), event.message_type(),
                                            event.to_payload(), correlation_id=str(saga_id))
        self._seq += 1
        return await self.consumer.process(
            MemoryDelivery(envelope.subject, envelope.headers(), envelope.body(), self._seq))


@pytest.fixture
async def services(db: Database, fresh_database: str,
                   engine: SagaEngine) -> AsyncIterator[Services]:
    s = Services(db, fresh_database, engine)
    yield s
    await s.relay.close()


def types(messages: list[Outgoing]) -> list[str]:
    return [m.headers[H_TYPE] for m in messages]


def order_data(order_id: str) -> Data:
    return {"order_id": order_id, "payment_id": f"pay-{order_id}", "amount": "3000",
            "card": "4242424242424242", "customer_id": "c1", "lines": [["A", 2], ["B", 1]]}


async def start(db: Database, engine: SagaEngine, saga_id: uuid.UUID | None = None) -> uuid.UUID:
    saga_id = saga_id or uuid.uuid4()
    async with db.unit_of_work() as uow:
        await engine.start(uow.session, ORDER, saga_id, order_data(str(saga_id)),
                           causation_id="req-1")
        await uow.commit()
    return saga_id


async def instance(db: Database, saga_id: uuid.UUID) -> Any:
    async with db.unit_of_work() as uow:
        found = await history(uow.session, saga_id)
    assert found is not None
    return found


# The events each service publishes for the order saga's commands, as they would.
def reserved(o: str) -> StockReserved:
    return StockReserved(reservation_id=o, order_id=o, lines=[StockLine(sku="A", quantity=2)],
                         expires_at="2026-11-22T10:00:00+00:00")


def authorized(o: str) -> PaymentAuthorized:
    return PaymentAuthorized(payment_id=f"pay-{o}", order_id=o, amount="3000", currency="KRW",
                             card_last4="4242")


def shipped(o: str) -> ShipmentCreated:
    return ShipmentCreated(shipment_id=o, order_id=o, customer_id="c1", tracking_number="TRK1")


def captured(o: str) -> PaymentCaptured:
    return PaymentCaptured(payment_id=f"pay-{o}", order_id=o, amount="3000", currency="KRW")


async def test_happy_path_runs_four_steps_to_completed(
        db: Database, engine: SagaEngine, services: Services) -> None:
    saga_id = await start(db, engine)
    o = str(saga_id)
    sent: list[Outgoing] = []
    for event in (reserved(o), authorized(o), shipped(o), captured(o)):
        batch = await services.commands()
        assert len(batch) == 1
        sent += batch
        assert await services.reply(saga_id, event) == Outcome.HANDLED
    assert await services.commands() == []  # nothing after the last step

    assert types(sent) == ["ReserveStock.v1", "AuthorizePayment.v1", "CreateShipment.v1",
                           "CapturePayment.v1"]
    assert [m.subject for m in sent] == ["inventory.commands.reserve_stock",
                                         "payments.commands.authorize_payment",
                                         "shipping.commands.create_shipment",
                                         "payments.commands.capture_payment"]
    assert all(m.headers[H_CORRELATION] == o for m in sent)
    assert sent[0].headers[H_CAUSATION] == "req-1"
    assert orjson.loads(sent[1].payload)["payment_id"] == f"pay-{o}"
    story = await instance(db, saga_id)
    assert story.instance.status == Status.COMPLETED
    assert story.instance.deadline_at is None
    assert story.instance.data["tracking"] == "TRK1"  # a reply handler updated the data
    assert story.instance.version == 5  # one write per accepted reply, none lost


async def test_failure_at_step_three_compensates_two_and_one_in_reverse(
        db: Database, engine: SagaEngine, services: Services) -> None:
    saga_id = await start(db, engine)
    o = str(saga_id)
    await services.reply(saga_id, reserved(o))
    await services.reply(saga_id, authorized(o))
    await services.commands()
    await services.reply(saga_id, ShipmentCreationFailed(shipment_id=o, order_id=o,
                                                         reason="address_unserviceable"))
    compensations = await services.commands()
    assert types(compensations) == ["VoidPayment.v1", "ReleaseStock.v1"]
    assert orjson.loads(compensations[1].payload)["reason"] == "no ship: address_unserviceable"
    story = await instance(db, saga_id)
    assert story.instance.status == Status.COMPENSATED
    assert story.instance.data["failure"] == {"step": "create_shipment",
                                              "reason": "no ship: address_unserviceable",
                                              "message_type": "ShipmentCreationFailed.v1"}
    assert [e.kind for e in story.events][-3:] == ["compensation_sent", "compensation_sent",
                                                   "compensated"]


async def test_failure_at_step_one_compensates_nothing_and_keeps_the_reason(
        db: Database, engine: SagaEngine, services: Services) -> None:
    saga_id = await start(db, engine)
    o = str(saga_id)
    await services.commands()
    await services.reply(saga_id, StockReservationFailed(reservation_id=o, order_id=o,
                                                         reason="out_of_stock", short_skus=["A"]))
    assert await services.commands() == []
    story = await instance(db, saga_id)
    assert story.instance.status == Status.COMPENSATED
    assert story.instance.data["failure"]["reason"] == "out_of_stock"


def dropped_count(services: Services, reason: str) -> float:
    value = services.metrics.dropped.labels("orders-saga-replies", reason)._value.get()
    return float(value)


def json_logs(capsys: pytest.CaptureFixture[str], event: str) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


async def test_duplicate_late_and_foreign_replies_are_recorded_counted_and_logged(
        db: Database, engine: SagaEngine, services: Services,
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("orders", "orders-test")  # JSON lines on stdout, as in a service
    saga_id = await start(db, engine)
    o = str(saga_id)
    first = Envelope.new(reserved(o).subject(), "StockReserved.v1", reserved(o).to_payload(),
                         correlation_id=o)
    assert await services.reply(saga_id, reserved(o), first) == Outcome.HANDLED
    # The same message again: the inbox drops it before the engine sees it.
    assert await services.reply(saga_id, reserved(o), first) == Outcome.DUPLICATE
    # The receiver published its outcome again (a resent command): a new message id. Normal:
    # counted and logged, not dead-lettered (replaying it later could change nothing).
    assert await services.reply(saga_id, reserved(o)) == Outcome.DROPPED
    # A reply for a later step, out of order: not what the current step awaits.
    assert await services.reply(saga_id, captured(o)) == Outcome.DROPPED
    await services.reply(saga_id, PaymentDeclined(payment_id=f"pay-{o}", order_id=o,
                                                  reason="card_declined"))
    # A late success after the saga was compensated changes nothing.
    assert await services.reply(saga_id, authorized(o)) == Outcome.DROPPED

    assert types(await services.commands()) == ["ReserveStock.v1", "AuthorizePayment.v1",
                                                "ReleaseStock.v1"]
    story = await instance(db, saga_id)
    assert story.instance.status == Status.COMPENSATED
    replies = [(e.message_type, e.detail["accepted"], e.detail.get("why", ""))
               for e in story.events if e.kind == "reply"]
    assert [(t, ok) for t, ok, _ in replies] == [
        ("StockReserved.v1", True), ("StockReserved.v1", False), ("PaymentCaptured.v1", False),
        ("PaymentDeclined.v1", True), ("PaymentAuthorized.v1", False)]
    assert "late" in replies[1][2] and "out of order" in replies[2][2]
    assert replies[4][2] == "saga compensated"
    assert {r: dropped_count(services, r) for r in ("late_reply", "not_awaited", "saga_ended",
                                                    "unknown_saga")} == {
        "late_reply": 1, "not_awaited": 1, "saga_ended": 1, "unknown_saga": 0}
    logged = json_logs(capsys, "message_dropped")
    assert [(d["reason"], d["level"], d["type"]) for d in logged] == [
        ("late_reply", "info", "StockReserved.v1"),
        ("not_awaited", "warning", "PaymentCaptured.v1"),
        ("saga_ended", "info", "PaymentAuthorized.v1")]
    assert all(d["correlation_id"] == o and d["consumer"] == "orders-saga-replies"
               for d in logged)
    assert services.dead_letters.messages == []


async def test_a_reply_for_a_saga_that_does_not_exist_is_dead_lettered(
        db: Database, engine: SagaEngine, services: Services,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Valid, but about no saga here: before, it was acked with no trace at all."""
    configure_logging("orders", "orders-test")
    ghost = uuid.uuid4()
    reply = authorized(str(ghost))
    envelope = Envelope.new(reply.subject(), reply.message_type(), reply.to_payload(),
                            correlation_id=str(ghost))
    assert await services.reply(ghost, reply, envelope) == Outcome.DEAD_LETTERED
    # Not a uuid at all: no saga of ours either.
    assert await services.reply(ghost, reply, Envelope.new(
        reply.subject(), reply.message_type(), reply.to_payload(),
        correlation_id="order-42")) == Outcome.DEAD_LETTERED

    first, second = services.dead_letters.messages
    assert first.subject == "dlq.orders-saga-replies"
    assert first.headers["Mercato-Message-Id"] == str(envelope.message_id)
    assert first.headers["Mercato-Dlq-Deliveries"] == "1"  # no retry: none could help
    assert f"saga '{ghost}', which does not exist here" in first.headers["Mercato-Dlq-Error"]
    assert "'order-42'" in second.headers["Mercato-Dlq-Error"]
    assert first.payload == envelope.body()  # replayable as it was
    assert dropped_count(services, "unknown_saga") == 2
    assert services.metrics.dead_letters.labels("orders-saga-replies")._value.get() == 2
    [logged, _] = json_logs(capsys, "message_dead_lettered")
    assert (logged["level"], logged["reason"], logged["correlation_id"], logged["type"]) == (
        "error", "unknown_saga", str(ghost), "PaymentAuthorized.v1")
    async with db.unit_of_work() as uow:  # and nothing of it was written
        assert (await uow.session.execute(text("SELECT count(*) FROM inbox"))).scalar() == 0


async def test_deadline_resends_then_compensates_including_the_timed_out_step(
        db: Database, engine: SagaEngine, services: Services, clock: ManualClock) -> None:
    saga_id = await start(db, engine)
    o = str(saga_id)
    await services.reply(saga_id, reserved(o))  # now at authorize_payment (10 s, 2 resends)
    assert types(await services.commands()) == ["ReserveStock.v1", "AuthorizePayment.v1"]

    async def tick(at: datetime) -> int:
        async with db.unit_of_work() as uow:
            n = await engine.tick(uow.session, at)
            await uow.commit()
        return n

    assert await tick(T0 + timedelta(seconds=9)) == 0  # not yet due
    assert await tick(T0 + timedelta(seconds=11)) == 1
    assert await tick(T0 + timedelta(seconds=12)) == 0  # the resend moved the deadline
    assert await tick(T0 + timedelta(seconds=30)) == 0  # ... by twice the step's deadline
    assert await tick(T0 + timedelta(seconds=32)) == 1
    resent = await services.commands()
    assert types(resent) == ["AuthorizePayment.v1", "AuthorizePayment.v1"]
    # Same payload (receivers are idempotent by payment_id), fresh message ids.
    assert len({m.payload for m in resent}) == 1
    assert len({m.headers["Mercato-Message-Id"] for m in resent}) == 2
    assert await tick(T0 + timedelta(seconds=71)) == 0  # the second resend waits 40 s
    assert await tick(T0 + timedelta(seconds=73)) == 1  # resends used up: give up
    assert types(await services.commands()) == ["VoidPayment.v1", "ReleaseStock.v1"]
    assert await tick(T0 + timedelta(hours=1)) == 0  # terminal sagas are left alone

    story = await instance(db, saga_id)
    assert story.instance.status == Status.COMPENSATED
    assert story.instance.data["failure"] == {"step": "authorize_payment",
                                              "reason": "timed_out"}
    assert [e.kind for e in story.events] == [
        "started", "command_sent", "reply", "command_sent", "resent", "resent", "timed_out",
        "compensation_sent", "compensation_sent", "compensated"]
    assert [e.detail.get("attempt") for e in story.events if e.kind == "resent"] == [2, 3]


async def test_two_reconcilers_drive_each_stuck_saga_once(
        db: Database, engine: SagaEngine, clock: ManualClock) -> None:
    ids = [await start(db, engine) for _ in range(10)]
    due = T0 + timedelta(seconds=11)
    other = SagaEngine([ORDER], clock=clock)  # a second orchestrator instance
    # The first holds its claim open while the second runs: SKIP LOCKED hands it the rest.
    async with db.unit_of_work() as first, db.unit_of_work() as second:
        took_first = await engine.tick(first.session, due, limit=6)
        took_second = await other.tick(second.session, due, limit=100)
        await first.commit()
        await second.commit()
    assert (took_first, took_second) == (6, 4)

    # And truly concurrently, on the next deadline.
    async def run(e: SagaEngine) -> int:
        async with db.unit_of_work() as uow:
            n = await e.tick(uow.session, due + timedelta(seconds=21))
            await uow.commit()
        return n

    assert sum(await asyncio.gather(run(engine), run(other))) == 10
    for saga_id in ids:
        story = await instance(db, saga_id)
        assert [e.kind for e in story.events].count("resent") == 2
        assert story.instance.resends == 2 and story.instance.version == 3


async def test_the_reconciler_redrives_a_saga_left_past_its_deadline(
        db: Database, engine: SagaEngine, clock: ManualClock) -> None:
    saga_id = await start(db, engine)
    clock.now = T0 + timedelta(seconds=11)  # the orchestrator was down past the deadline
    tasks = BackgroundTasks(CollectorRegistry())
    tasks.every("saga-reconciler", 0.02, reconciler(db, engine))
    tasks.start()
    try:
        async with asyncio.timeout(10):
            while (await instance(db, saga_id)).instance.resends == 0:
                await asyncio.sleep(0.02)
    finally:
        await tasks.stop()
    story = await instance(db, saga_id)
    assert [e.kind for e in story.events][-1] == "resent"
    assert story.instance.deadline_at == T0 + timedelta(seconds=31)  # 11 + twice 10


async def test_history_is_complete_ordered_and_in_one_trace(
        db: Database, engine: SagaEngine, services: Services, clock: ManualClock) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("POST /api/orders") as span:
        saga_id = await start(db, engine)
        trace_id = format(span.get_span_context().trace_id, "032x")
    assert trace.get_current_span().get_span_context().trace_id == 0
    o = str(saga_id)
    clock.now = T0 + timedelta(milliseconds=250)
    await services.reply(saga_id, reserved(o))  # no trace on this reply
    clock.now = T0 + timedelta(seconds=11)
    async with db.unit_of_work() as uow:  # the reconciler has no span of its own
        await engine.tick(uow.session)
        await uow.commit()
    clock.now = T0 + timedelta(seconds=12)
    await services.reply(saga_id, authorized(o))

    sent = await services.commands()
    assert types(sent) == ["ReserveStock.v1", "AuthorizePayment.v1", "AuthorizePayment.v1",
                           "CreateShipment.v1"]
    assert {m.headers["traceparent"].split("-")[1] for m in sent} == {trace_id}

    story = await instance(db, saga_id)
    assert story.trace_id == trace_id
    assert [(e.kind, e.step, e.message_type) for e in story.events] == [
        ("started", None, None),
        ("command_sent", "reserve_stock", "ReserveStock.v1"),
        ("reply", "reserve_stock", "StockReserved.v1"),
        ("command_sent", "authorize_payment", "AuthorizePayment.v1"),
        ("resent", "authorize_payment", "AuthorizePayment.v1"),
        ("reply", "authorize_payment", "PaymentAuthorized.v1"),
        ("command_sent", "create_shipment", "CreateShipment.v1"),
    ]
    assert [e.elapsed_ms for e in story.events] == [0, 0, 250, 250, 11000, 12000, 12000]
    ids = [e.id for e in story.events]
    assert ids == sorted(ids)
    assert story.events[1].detail["message_id"] == sent[0].headers["Mercato-Message-Id"]
    plain = story.to_dict()
    assert plain["instance"]["status"] == "RUNNING" and plain["trace_id"] == trace_id
    assert orjson.dumps(plain)  # JSON-ready as it is


async def test_unknown_saga_history_is_none(db: Database) -> None:
    async with db.unit_of_work() as uow:
        assert await history(uow.session, uuid.uuid4()) is None


async def test_compensation_that_cannot_be_built_fails_the_saga(
        db: Database, clock: ManualClock, services: Services) -> None:
    def broken_release(d: Data) -> ReleaseStock:
        raise KeyError("reservation_id")

    saga = SagaDefinition("fragile", [
        Step("reserve_stock", reserve, success={"StockReserved.v1": None},
             compensation=broken_release),
        Step("authorize_payment", authorize, success={"PaymentAuthorized.v1": None},
             failure={"PaymentDeclined.v1": None}),
    ])
    engine = SagaEngine([saga], clock=clock)
    services.consumer.spec.handlers = engine.handlers()
    saga_id = uuid.uuid4()
    async with db.unit_of_work() as uow:
        await engine.start(uow.session, saga, saga_id, order_data(str(saga_id)))
        await uow.commit()
    o = str(saga_id)
    await services.reply(saga_id, reserved(o))
    await services.reply(saga_id, PaymentDeclined(payment_id=f"pay-{o}", order_id=o,
                                                  reason="card_declined"))
    story = await instance(db, saga_id)
    assert story.instance.status == Status.FAILED
    assert story.events[-1].kind == "failed"
    assert "reserve_stock" in story.events[-1].detail["compensations_not_sent"][0]


async def test_outbox_rows_and_saga_rows_commit_together(db: Database,
                                                         engine: SagaEngine) -> None:
    async with db.unit_of_work() as uow:
        await engine.start(uow.session, ORDER, uuid.uuid4(), order_data("x"))
        # no commit: the saga and its first command roll back together
    async with db.engine.connect() as conn:
        counts = (await conn.execute(text(
            "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM saga_instances), "
            "(SELECT count(*) FROM saga_events)"))).one()
    assert tuple(counts) == (0, 0, 0)


async def test_concurrent_replies_to_one_saga_apply_one_at_a_time(
        db: Database, engine: SagaEngine, services: Services) -> None:
    saga_id = await start(db, engine)
    o = str(saga_id)
    # Two copies of the outcome under different message ids, handled at the same moment by
    # two consumer workers: the row lock serialises them, so exactly one advances the saga.
    outcomes = await asyncio.gather(services.reply(saga_id, reserved(o)),
                                    services.reply(saga_id, reserved(o)))
    assert sorted(outcomes) == [Outcome.DROPPED, Outcome.HANDLED]  # the second came late
    assert types(await services.commands()) == ["ReserveStock.v1", "AuthorizePayment.v1"]
    story = await instance(db, saga_id)
    assert story.instance.current_step == 1 and story.instance.version == 2
    assert sorted(e.detail["accepted"] for e in story.events if e.kind == "reply") == [False,
                                                                                        True]


def statements_sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements sent on asyncpg directly from now on, in order."""
    import chassis.db as chassis_db

    statements: list[str] = []
    # In a transaction, and alone (a transaction that is one statement, ADR 0055).
    for name in ("_on_driver", "_on_driver_once"):
        def spy(run_on: Any = getattr(chassis_db, name)) -> Any:
            async def counted(tx: Any, sql: str, args: tuple[Any, ...], run: Any) -> Any:
                statements.append(sql)
                return await run_on(tx, sql, args, run)
            return counted

        monkeypatch.setattr(chassis_db, name, spy())
    return statements


async def test_a_reply_writes_its_commands_history_and_state_in_one_statement_at_commit(
        db: Database, engine: SagaEngine, services: Services,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """ADR 0048: the rows a reply writes at commit (its next command, its history, the
    saga's new state) are one round trip, not three."""
    saga_id = await start(db, engine)
    await services.commands()
    statements = statements_sent(monkeypatch)
    assert await services.reply(saga_id, reserved(str(saga_id))) == Outcome.HANDLED
    writes = [s for s in statements if "outbox" in s or "saga_events" in s
              or s.startswith("UPDATE saga_instances")]
    assert len(writes) == 1, "\n".join(statements)
    assert all(part in writes[0] for part in ("INSERT INTO outbox", "INSERT INTO saga_events",
                                              "UPDATE saga_instances"))
    assert types(await services.commands()) == ["AuthorizePayment.v1"]
    story = await instance(db, saga_id)
    assert (story.instance.current_step, story.instance.version) == (1, 2)
    assert [e.kind for e in story.events][-2:] == ["reply", "command_sent"]


async def test_a_saga_changed_under_a_reply_fails_its_commit_and_writes_nothing(
        db: Database, engine: SagaEngine) -> None:
    """The version check answers in the commit's statement now: a stale save still fails
    the transaction, with the reply's command and history."""
    from chassis.saga import ConcurrentSagaUpdate, store

    saga_id = await start(db, engine)
    async with db.unit_of_work() as uow:
        inst = await store.load(uow.session, saga_id)
    assert inst is not None
    async with db.unit_of_work() as uow:  # someone else moves the saga on meanwhile
        await store.save(uow.session, await store.load(uow.session, saga_id, lock=True) or inst,
                         T0)
        await uow.commit()
    async with db.engine.connect() as conn:
        before = tuple((await conn.execute(text(
            "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM saga_events)"))).one())
    inst.current_step = 3
    with pytest.raises(ConcurrentSagaUpdate):
        async with db.unit_of_work() as uow:
            await store.record(uow.session, saga_id, T0, "reply", step="x")
            await store.save(uow.session, inst, T0)
            await uow.commit()
    async with db.engine.connect() as conn:
        after = tuple((await conn.execute(text(
            "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM saga_events)"))).one())
        step = (await conn.execute(text("SELECT current_step, version FROM saga_instances "
                                        "WHERE id = :id"), {"id": saga_id})).one()
    assert after == before
    assert tuple(step) == (0, 2)


async def test_a_saga_saved_then_loaded_in_one_transaction_is_what_was_saved(
        db: Database, engine: SagaEngine) -> None:
    """A batch can hold two replies of one saga: the second load sees the first's save,
    and each save is checked against the version the one before left."""
    from chassis.saga import store

    saga_id = await start(db, engine)
    async with db.unit_of_work() as uow:
        first = await store.load(uow.session, saga_id, lock=True)
        assert first is not None
        first.current_step = 1
        await store.save(uow.session, first, T0)
        second = await store.load(uow.session, saga_id, lock=True)
        assert second is not None and (second.current_step, second.version) == (1, 2)
        second.current_step = 2
        await store.save(uow.session, second, T0)
        await store.save(uow.session, second, T0)  # the same saga twice before commit
        await uow.commit()
    story = await instance(db, saga_id)
    assert (story.instance.current_step, story.instance.version) == (2, 4)


async def test_a_started_saga_is_written_with_its_history_and_command_in_one_statement(
        db: Database, engine: SagaEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """ADR 0049: the new saga row joins the commit's one statement (it was a statement of
    its own, through SQLAlchemy, in every order's placement)."""
    statements = statements_sent(monkeypatch)
    saga_id = await start(db, engine)
    writes = [s for s in statements if "INSERT" in s]
    assert len(writes) == 1, "\n".join(statements)
    assert all(part in writes[0] for part in ("INSERT INTO saga_instances",
                                              "INSERT INTO saga_events", "INSERT INTO outbox"))
    story = await instance(db, saga_id)
    assert (story.instance.status, story.instance.current_step, story.instance.version) == (
        "RUNNING", 0, 1)
    assert story.instance.data["order_id"] == str(saga_id)
    assert story.instance.data["lines"] == [["A", 2], ["B", 1]]
    assert [e.kind for e in story.events] == ["started", "command_sent"]


async def test_a_saga_started_then_loaded_or_saved_in_one_transaction_is_written_first(
        db: Database, engine: SagaEngine) -> None:
    from chassis.saga import store

    saga_id = uuid.uuid4()
    async with db.unit_of_work() as uow:
        started = await engine.start(uow.session, ORDER, saga_id, order_data("x"))
        loaded = await store.load(uow.session, saga_id, lock=True)
        assert loaded is not None and (loaded.version, loaded.current_step) == (1, 0)
        loaded.current_step = 1
        await store.save(uow.session, loaded, T0)
        await uow.commit()
    assert started.id == saga_id
    story = await instance(db, saga_id)
    assert (story.instance.current_step, story.instance.version) == (1, 2)


async def test_a_saga_started_twice_fails_the_commit_and_writes_nothing(
        db: Database, engine: SagaEngine) -> None:
    from sqlalchemy.exc import IntegrityError

    saga_id = await start(db, engine)
    async with db.engine.connect() as conn:
        before = tuple((await conn.execute(text(
            "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM saga_events)"))).one())
    with pytest.raises(IntegrityError):
        async with db.unit_of_work() as uow:
            await engine.start(uow.session, ORDER, saga_id, order_data("again"))
            await uow.commit()
    async with db.engine.connect() as conn:
        after = tuple((await conn.execute(text(
            "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM saga_events)"))).one())
    assert after == before
