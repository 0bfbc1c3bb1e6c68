"""A saga's end: the definition's ``on_end`` hook runs in the transaction that ends the saga,
on every path that ends one, and the definition's secret keys never outlive it nor show in
its history, in ``history()`` or in the logs.

Real PostgreSQL and the real inbox consumer; an in-memory broker plays the other services.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from chassis.db import Database
from chassis.logging import configure_logging
from chassis.messaging.consumer import ConsumerSpec, InboxConsumer, Outcome
from chassis.messaging.envelope import Envelope
from chassis.messaging.memory import InMemoryBroker, MemoryDelivery
from chassis.messaging.metrics import MessagingMetrics
from chassis.messaging.outbox import stage_message
from chassis.messaging.relay import OutboxRelay
from chassis.messaging.tables import inbox_table, outbox_table
from chassis.saga import (
    REDACTED,
    SagaDefinition,
    SagaEnd,
    SagaEngine,
    SagaInstance,
    Status,
    Step,
    history,
    record_event,
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
    PaymentAuthorized,
    PaymentDeclined,
    VoidPayment,
)
from prometheus_client import CollectorRegistry
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncSession

pytestmark = pytest.mark.integration

metadata = MetaData()
outbox_table(metadata)
inbox_table(metadata)
saga_tables(metadata)

Data = dict[str, Any]
T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
CARD = "4000000000009995"
TOKEN = "pm_0123456789abcdef"


def reserve(d: Data) -> ReserveStock:
    return ReserveStock(reservation_id=d["order_id"], order_id=d["order_id"],
                        lines=[StockLine(sku="A", quantity=1)])


def release(d: Data) -> ReleaseStock:
    return ReleaseStock(reservation_id=d["order_id"], reason=d["failure"]["reason"])


def authorize(d: Data) -> AuthorizePayment:
    return AuthorizePayment(payment_id=f"pay-{d['order_id']}", order_id=d["order_id"],
                            amount="1000", currency="KRW", card_number=d["card"])


def void(d: Data) -> VoidPayment:
    return VoidPayment(payment_id=f"pay-{d['order_id']}", order_id=d["order_id"])


@dataclass
class Ends:
    """The hook under test: remembers each end and writes in the ending transaction."""

    seen: list[tuple[SagaEnd, Data]] = field(default_factory=list)
    fail_with: str | None = None

    async def __call__(self, session: AsyncSession, saga: SagaInstance, end: SagaEnd) -> None:
        if self.fail_with is not None:
            raise RuntimeError(self.fail_with)
        self.seen.append((end, dict(saga.data)))
        # What a service does at the end: a history row and a message, in this transaction.
        await record_event(session, saga.id, "settled", at=end.at,
                           detail={"status": end.status})
        await stage_message(session, "orders.events.order_settled", "OrderSettled.v1",
                    {"order_id": str(saga.id), "status": end.status},
                    correlation_id=str(saga.id), causation_id=end.causation_id)


def definition(ends: Ends, *, release_builder: Any = release,
               charge_builder: Any = authorize) -> SagaDefinition:
    return SagaDefinition("checkout", [
        Step("reserve_stock", reserve, success={"StockReserved.v1": None},
             failure={"StockReservationFailed.v1": None}, compensation=release_builder,
             deadline_s=10, max_resends=0),
        Step("authorize_payment", charge_builder, success={"PaymentAuthorized.v1": None},
             failure={"PaymentDeclined.v1": None}, compensation=void, deadline_s=10,
             max_resends=0),
    ], on_end=ends, secret_keys=("card", "token"))


@dataclass
class Rig:
    db: Database
    engine: SagaEngine
    saga: SagaDefinition
    ends: Ends
    clock: ManualClock
    broker: InMemoryBroker
    dead_letters: InMemoryBroker
    relay: OutboxRelay
    consumer: InboxConsumer
    _seq: int = 0
    _seen: int = 0

    async def start(self, **data: Any) -> uuid.UUID:
        saga_id = uuid.uuid4()
        async with self.db.unit_of_work() as uow:
            await self.engine.start(uow.session, self.saga, saga_id,
                                    {"order_id": str(saga_id), "card": CARD, "token": TOKEN,
                                     **data})
            await uow.commit()
        return saga_id

    def envelope(self, saga_id: uuid.UUID, event: Event) -> Envelope:
        return Envelope.new(event.subject(), event.message_type(), event.to_payload(),
                            correlation_id=str(saga_id))

    async def deliver(self, envelope: Envelope) -> str:
        self._seq += 1
        return await self.consumer.process(MemoryDelivery(
            envelope.subject, envelope.headers(), envelope.body(), self._seq))

    async def reply(self, saga_id: uuid.UUID, event: Event) -> str:
        return await self.deliver(self.envelope(saga_id, event))

    async def tick(self, after_s: float) -> int:
        async with self.db.unit_of_work() as uow:
            n = await self.engine.tick(uow.session, T0 + timedelta(seconds=after_s))
            await uow.commit()
        return n

    async def sent(self) -> list[str]:
        await self.relay.relay_once()
        fresh = self.broker.messages[self._seen:]
        self._seen = len(self.broker.messages)
        return [m.headers["Mercato-Type"] for m in fresh]

    async def instance(self, saga_id: uuid.UUID) -> SagaInstance:
        async with self.db.unit_of_work() as uow:
            found = await history(uow.session, saga_id)
        assert found is not None
        return found.instance

    async def kinds(self, saga_id: uuid.UUID) -> list[str]:
        async with self.db.unit_of_work() as uow:
            found = await history(uow.session, saga_id)
        assert found is not None
        return [e.kind for e in found.events]

    async def tables_text(self) -> str:
        """Every saga row and history row, as text."""
        async with self.db.engine.connect() as conn:
            rows = [*(await conn.execute(text("SELECT t::text FROM saga_instances t"))).scalars(),
                    *(await conn.execute(text("SELECT t::text FROM saga_events t"))).scalars()]
        return "\n".join(rows)


db = metadata_database_fixture(metadata)


async def make_rig(db: Database, url: str, **builders: Any) -> Rig:
    ends, clock = Ends(), ManualClock(T0)
    saga = definition(ends, **builders)
    engine = SagaEngine([saga], clock=clock)
    broker, dead_letters = InMemoryBroker(), InMemoryBroker()
    consumer = InboxConsumer(ConsumerSpec("checkout-replies", "X_EVENTS", ["*.events.>"],
                                          engine.handlers()),
                             db, dead_letters, MessagingMetrics(CollectorRegistry()))
    return Rig(db, engine, saga, ends, clock, broker, dead_letters,
               OutboxRelay(url, broker), consumer)


@pytest.fixture
async def rig(db: Database, fresh_database: str) -> AsyncIterator[Rig]:
    made = await make_rig(db, fresh_database)
    yield made
    await made.relay.close()


def reserved(o: uuid.UUID) -> StockReserved:
    return StockReserved(reservation_id=str(o), order_id=str(o),
                         lines=[StockLine(sku="A", quantity=1)],
                         expires_at="2026-12-02T10:00:00+00:00")


def authorized(o: uuid.UUID) -> PaymentAuthorized:
    return PaymentAuthorized(payment_id=f"pay-{o}", order_id=str(o), amount="1000",
                             currency="KRW", card_last4="9995")


def declined(o: uuid.UUID) -> PaymentDeclined:
    return PaymentDeclined(payment_id=f"pay-{o}", order_id=str(o),
                           reason="insufficient_funds")


# -- the end hook, on each path that ends a saga ----------------------------------------------

async def test_no_hook_while_the_saga_runs(rig: Rig) -> None:
    o = await rig.start()
    assert await rig.reply(o, reserved(o)) == Outcome.HANDLED
    assert rig.ends.seen == []
    assert await rig.sent() == ["ReserveStock.v1", "AuthorizePayment.v1"]


async def test_a_success_reply_that_completes_the_saga_runs_the_hook_in_its_transaction(
        rig: Rig) -> None:
    o = await rig.start()
    await rig.reply(o, reserved(o))
    last = rig.envelope(o, authorized(o))
    assert await rig.deliver(last) == Outcome.HANDLED
    [(end, data)] = rig.ends.seen
    assert (end.status, end.cause, end.causation_id, end.failure) == (
        Status.COMPLETED, "reply", str(last.message_id), None)
    assert end.at == T0
    assert "card" not in data and "token" not in data  # dropped before the hook runs
    assert (await rig.kinds(o))[-2:] == ["completed", "settled"]
    assert (await rig.sent())[-1] == "OrderSettled.v1"
    assert (await rig.instance(o)).status == Status.COMPLETED


async def test_a_failure_reply_compensates_then_runs_the_hook(rig: Rig) -> None:
    o = await rig.start()
    await rig.reply(o, reserved(o))
    assert await rig.reply(o, declined(o)) == Outcome.HANDLED
    [(end, data)] = rig.ends.seen
    assert (end.status, end.cause) == (Status.COMPENSATED, "reply")
    assert end.failure == {"step": "authorize_payment", "reason": "insufficient_funds",
                           "message_type": "PaymentDeclined.v1"}
    assert data["failure"] == end.failure and "card" not in data
    # The compensation is staged before the hook's own message, all in one transaction.
    assert (await rig.sent())[-2:] == ["ReleaseStock.v1", "OrderSettled.v1"]
    assert (await rig.kinds(o))[-2:] == ["compensated", "settled"]


async def test_a_deadline_past_its_last_resend_compensates_then_runs_the_hook(
        rig: Rig) -> None:
    o = await rig.start()
    await rig.reply(o, reserved(o))
    assert await rig.tick(9) == 0 and rig.ends.seen == []
    assert await rig.tick(11) == 1
    [(end, data)] = rig.ends.seen
    assert (end.status, end.cause, end.causation_id) == (Status.COMPENSATED, "deadline", None)
    assert end.at == T0 + timedelta(seconds=11)
    assert end.failure == {"step": "authorize_payment", "reason": "timed_out"}
    assert "card" not in data
    assert (await rig.sent())[-3:] == ["VoidPayment.v1", "ReleaseStock.v1", "OrderSettled.v1"]
    assert (await rig.kinds(o))[-2:] == ["compensated", "settled"]
    assert await rig.tick(3600) == 0 and len(rig.ends.seen) == 1  # ended: never again


async def test_a_compensation_that_cannot_be_built_fails_the_saga_and_runs_the_hook(
        db: Database, fresh_database: str) -> None:
    def broken_release(d: Data) -> ReleaseStock:
        raise KeyError("reservation")

    rig = await make_rig(db, fresh_database, release_builder=broken_release)
    try:
        o = await rig.start()
        await rig.reply(o, reserved(o))
        await rig.reply(o, declined(o))
        [(end, _)] = rig.ends.seen
        assert end.status == Status.FAILED == (await rig.instance(o)).status
        assert (await rig.kinds(o))[-2:] == ["failed", "settled"]
    finally:
        await rig.relay.close()


async def test_a_next_command_that_cannot_be_built_compensates_and_runs_the_hook(
        db: Database, fresh_database: str) -> None:
    def unbuildable(d: Data) -> AuthorizePayment:
        raise ValueError("no payment method")

    rig = await make_rig(db, fresh_database, charge_builder=unbuildable)
    try:
        o = await rig.start()
        await rig.reply(o, reserved(o))
        [(end, _)] = rig.ends.seen
        assert end.status == Status.COMPENSATED
        assert end.failure is not None
        assert end.failure["reason"] == "bad command: no payment method"
    finally:
        await rig.relay.close()


async def test_a_hook_that_fails_leaves_the_saga_running_and_the_reply_is_retried(
        rig: Rig) -> None:
    o = await rig.start()
    await rig.reply(o, reserved(o))
    await rig.sent()
    rig.ends.fail_with = "orders database busy"
    last = rig.envelope(o, authorized(o))
    assert await rig.deliver(last) == Outcome.RETRY
    inst = await rig.instance(o)
    # Nothing of the end committed: not the status, not the dropped secrets, no message.
    assert (inst.status, inst.current_step) == (Status.RUNNING, 1)
    assert inst.data["card"] == CARD  # still there
    assert await rig.sent() == []
    rig.ends.fail_with = None
    assert await rig.deliver(last) == Outcome.HANDLED
    assert (await rig.instance(o)).status == Status.COMPLETED
    assert await rig.sent() == ["OrderSettled.v1"]


async def test_a_hook_that_fails_in_the_reconciler_is_retried_at_the_next_tick(
        rig: Rig) -> None:
    o = await rig.start()
    rig.ends.fail_with = "orders database busy"
    assert await rig.tick(11) == 1
    assert (await rig.instance(o)).status == Status.RUNNING
    assert "timed_out" not in await rig.kinds(o)
    rig.ends.fail_with = None
    assert await rig.tick(12) == 1
    assert (await rig.instance(o)).status == Status.COMPENSATED
    assert [e.status for e, _ in rig.ends.seen] == [Status.COMPENSATED]


# -- secret keys --------------------------------------------------------------------------------

def json_lines(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out


@pytest.mark.parametrize("ending", ["completed", "declined", "timed_out", "refused_first"])
async def test_secrets_are_gone_when_the_saga_ends_and_never_in_its_history(
        rig: Rig, ending: str) -> None:
    o = await rig.start()
    if ending == "refused_first":
        await rig.reply(o, StockReservationFailed(reservation_id=str(o), order_id=str(o),
                                                  reason="out_of_stock", short_skus=["A"]))
    else:
        await rig.reply(o, reserved(o))
        if ending == "completed":
            await rig.reply(o, authorized(o))
        elif ending == "declined":
            await rig.reply(o, declined(o))
        else:
            await rig.tick(11)
    async with rig.db.engine.connect() as conn:
        data = orjson.loads((await conn.execute(text(
            "SELECT data::text FROM saga_instances WHERE id = :id"), {"id": o})).scalar_one())
    assert data["order_id"] == str(o)
    assert "card" not in data and "token" not in data
    stored = await rig.tables_text()
    assert CARD not in stored and TOKEN not in stored


async def test_history_redacts_the_secrets_of_a_saga_still_running(rig: Rig) -> None:
    o = await rig.start(note=f"card {CARD} on file")  # quoted elsewhere in the data too
    await rig.reply(o, reserved(o))
    async with rig.db.unit_of_work() as uow:
        for found in (await rig.engine.history(uow.session, o),
                      await history(uow.session, o, secret_keys=rig.saga.secret_keys)):
            assert found is not None
            dumped = orjson.dumps(found.to_dict()).decode()
            assert CARD not in dumped and TOKEN not in dumped
            assert found.instance.data["card"] == found.instance.data["token"] == REDACTED
            assert found.instance.data["note"] == f"card {REDACTED} on file"
            assert found.events[0].kind == "started"
            assert "card" not in found.events[0].detail["data"]
    # The saga itself still holds them: AuthorizePayment needs the card.
    async with rig.db.engine.connect() as conn:
        raw = (await conn.execute(text("SELECT data->>'card' FROM saga_instances"))).scalar()
    assert raw == CARD


async def test_an_error_quoting_a_secret_is_logged_and_dead_lettered_without_it(
        db: Database, fresh_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("checkout", "checkout-test")
    ends = Ends()

    def nosy(d: Data, p: dict[str, Any]) -> None:
        raise ValueError(f"cannot apply {p['order_id']} to card {d['card']}")

    saga = SagaDefinition("nosy", [
        Step("reserve_stock", reserve, success={"StockReserved.v1": nosy},
             compensation=release, deadline_s=10, max_resends=0),
        Step("authorize_payment", authorize, success={"PaymentAuthorized.v1": None}),
    ], on_end=ends, secret_keys=("card",))
    engine = SagaEngine([saga], clock=ManualClock(T0))
    dead = InMemoryBroker()
    consumer = InboxConsumer(ConsumerSpec("nosy-replies", "X_EVENTS", ["*.events.>"],
                                          engine.handlers(), max_deliver=2),
                             db, dead, MessagingMetrics(CollectorRegistry()))
    o = uuid.uuid4()
    async with db.unit_of_work() as uow:
        await engine.start(uow.session, saga, o, {"order_id": str(o), "card": CARD})
        await uow.commit()
    event = reserved(o)
    envelope = Envelope.new(event.subject(), event.message_type(), event.to_payload(),
                            correlation_id=str(o))
    first = MemoryDelivery(envelope.subject, envelope.headers(), envelope.body(), 1)
    assert await consumer.process(first) == Outcome.RETRY
    assert await consumer.process(first.redelivered()) == Outcome.DEAD_LETTERED
    logged = json_lines(capsys)
    assert "message_failed" in logged and "message_dead_lettered" in logged
    assert f"to card {REDACTED}" in logged  # the error is told, the card is not
    assert CARD not in logged
    [letter] = dead.messages
    assert CARD not in orjson.dumps(letter.headers).decode()


async def test_a_reconciler_error_quoting_a_secret_is_logged_without_it(
        db: Database, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("checkout", "checkout-test")
    calls: list[int] = []

    def leaky(d: Data) -> ReserveStock:
        calls.append(1)
        if len(calls) > 1:  # the resend
            raise RuntimeError(f"card {d['card']} refused by the builder")
        return reserve(d)

    saga = SagaDefinition("leaky", [
        Step("reserve_stock", leaky, success={"StockReserved.v1": None}, deadline_s=10,
             max_resends=1),
    ], secret_keys=("card",))
    engine = SagaEngine([saga], clock=ManualClock(T0))
    o = uuid.uuid4()
    async with db.unit_of_work() as uow:
        await engine.start(uow.session, saga, o, {"order_id": str(o), "card": CARD})
        await uow.commit()
    async with db.unit_of_work() as uow:
        assert await engine.tick(uow.session, T0 + timedelta(seconds=11)) == 1
        await uow.commit()
    logged = json_lines(capsys)
    assert "saga_tick_failed" in logged and "refused by the builder" in logged
    assert CARD not in logged


async def test_a_failure_reason_quoting_a_secret_is_kept_without_it(
        db: Database, fresh_database: str) -> None:
    def expired(d: Data) -> AuthorizePayment:
        raise ValueError(f"card {d['card']} expired")

    rig = await make_rig(db, fresh_database, charge_builder=expired)
    try:
        o = await rig.start()
        await rig.reply(o, reserved(o))  # the next command cannot be built: compensated
        [(end, data)] = rig.ends.seen
        assert end.failure is not None
        assert end.failure["reason"] == data["failure"]["reason"] == (
            f"bad command: card {REDACTED} expired")
        assert CARD not in await rig.tables_text()
    finally:
        await rig.relay.close()
