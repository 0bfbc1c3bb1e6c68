"""The sagas' metrics on real PostgreSQL: transitions counted once their transaction
committed (never for one rolled back), and the running and overdue sagas sampled from the
table with the orchestrator's clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chassis.db import Database, after_commit
from chassis.messaging.envelope import Envelope
from chassis.messaging.tables import outbox_table
from chassis.saga import SagaDefinition, SagaEngine, Step, saga_tables
from chassis.saga.metrics import SagaMetrics, sample_sagas
from chassis.testing import ManualClock, metadata_database_fixture
from contracts.inventory.v1 import ReleaseStock, ReserveStock, StockLine
from contracts.payments.v1 import AuthorizePayment, PaymentDeclined
from prometheus_client import CollectorRegistry
from sqlalchemy import MetaData, text

pytestmark = pytest.mark.integration

metadata = MetaData()
outbox_table(metadata)
saga_tables(metadata)
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def reserve(d: dict[str, Any]) -> ReserveStock:
    return ReserveStock(reservation_id=d["id"], order_id=d["id"],
                        lines=[StockLine(sku="A", quantity=1)])


def release(d: dict[str, Any]) -> ReleaseStock:
    return ReleaseStock(reservation_id=d["id"], reason="undo")


def authorize(d: dict[str, Any]) -> AuthorizePayment:
    return AuthorizePayment(payment_id=d["id"], order_id=d["id"], amount="1", currency="KRW",
                            card_number="4242424242424242")


SAGA = SagaDefinition("order", [
    Step("reserve_stock", reserve, success={"StockReserved.v1": None}, compensation=release,
         deadline_s=10, max_resends=1),
    Step("authorize_payment", authorize, success={"PaymentAuthorized.v1": None},
         failure={"PaymentDeclined.v1": None}, deadline_s=10),
])


db = metadata_database_fixture(metadata)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"saga": "order", **labels})


async def start(db: Database, engine: SagaEngine, *, commit: bool = True) -> uuid.UUID:
    saga_id = uuid.uuid4()
    async with db.unit_of_work() as uow:
        await engine.start(uow.session, SAGA, saga_id, {"id": str(saga_id)})
        if commit:
            await uow.commit()
    return saga_id


async def tick(db: Database, engine: SagaEngine, at: datetime) -> int:
    async with db.unit_of_work() as uow:
        driven = await engine.tick(uow.session, at)
        await uow.commit()
    return driven


async def test_every_series_exists_at_zero_before_the_first_saga() -> None:
    registry = CollectorRegistry()
    SagaEngine([SAGA], metrics=SagaMetrics(registry))
    for status in ("completed", "compensated", "failed"):
        assert value(registry, "saga_finished_total", status=status) == 0
    assert value(registry, "saga_started_total") == 0
    assert value(registry, "saga_resends_total", step="reserve_stock") == 0
    assert value(registry, "saga_timeouts_total", step="authorize_payment") == 0
    assert value(registry, "saga_overdue") == 0


async def test_transitions_are_counted_once_committed_and_never_when_rolled_back(
        db: Database) -> None:
    registry = CollectorRegistry()
    clock = ManualClock(T0)
    engine = SagaEngine([SAGA], clock=clock, metrics=SagaMetrics(registry))

    await start(db, engine, commit=False)  # the request failed: nothing was stored
    assert value(registry, "saga_started_total") == 0
    saga_id = await start(db, engine)
    assert value(registry, "saga_started_total") == 1

    # reserve_stock's deadline passes: one resend, then it is given up and compensated.
    assert await tick(db, engine, T0 + timedelta(seconds=11)) == 1
    assert value(registry, "saga_resends_total", step="reserve_stock") == 1
    assert await tick(db, engine, T0 + timedelta(seconds=40)) == 1
    assert value(registry, "saga_timeouts_total", step="reserve_stock") == 1
    assert value(registry, "saga_finished_total", status="compensated") == 1

    # A reply that finishes a saga inside a transaction that then rolls back (a consumer
    # batch that failed and is handled again message by message) counts nothing.
    other = await start(db, engine)
    async with db.unit_of_work() as uow:
        await uow.session.execute(text(
            "UPDATE saga_instances SET current_step = 1 WHERE id = :id"), {"id": other})
        await uow.commit()
    declined = PaymentDeclined(payment_id=str(other), order_id=str(other), reason="card_declined")
    envelope = Envelope.new(declined.subject(), declined.message_type(), declined.to_payload(),
                            correlation_id=str(other))
    async with db.unit_of_work() as uow:
        await engine.handle_reply(uow.session, envelope)
    assert value(registry, "saga_finished_total", status="compensated") == 1
    async with db.unit_of_work() as uow:
        await engine.handle_reply(uow.session, envelope)
        await uow.commit()
    assert value(registry, "saga_finished_total", status="compensated") == 2
    assert value(registry, "saga_started_total") == 2
    assert saga_id != other


async def test_the_sampler_counts_running_sagas_per_step_and_how_late_the_worst_is(
        db: Database) -> None:
    registry = CollectorRegistry()
    clock = ManualClock(T0)
    metrics = SagaMetrics(registry)
    engine = SagaEngine([SAGA], clock=clock, metrics=metrics)
    first = await start(db, engine)
    clock.now = T0 + timedelta(seconds=4)
    await start(db, engine)
    async with db.unit_of_work() as uow:  # one saga whose definition nobody knows any more
        await uow.session.execute(text(
            "INSERT INTO saga_instances (id, saga_name, status, current_step, data, "
            "trace_context, deadline_at) VALUES (:id, 'retired', 'RUNNING', 3, '{}', '{}', "
            ":deadline)"), {"id": uuid.uuid4(), "deadline": T0})
        await uow.commit()

    await sample_sagas(db, engine.definitions, metrics, clock=lambda: T0 + timedelta(seconds=5))
    assert value(registry, "saga_running", step="reserve_stock") == 2
    assert value(registry, "saga_running", step="authorize_payment") == 0
    assert value(registry, "saga_overdue") == 0 and value(registry, "saga_overdue_seconds") == 0
    assert registry.get_sample_value("saga_running", {"saga": "retired", "step": "3"}) == 1
    assert registry.get_sample_value("saga_overdue", {"saga": "retired"}) == 1
    assert registry.get_sample_value("saga_overdue_seconds", {"saga": "retired"}) == 5

    # 70 s on, nothing drove them (no reconciler): both overdue, the first by 60 s.
    await sample_sagas(db, engine.definitions, metrics, clock=lambda: T0 + timedelta(seconds=70))
    assert value(registry, "saga_overdue") == 2
    assert value(registry, "saga_overdue_seconds") == 60

    # Driven (resent, deadline moved on), the sagas are no longer overdue; one that moved to
    # the next step leaves its old step at 0.
    clock.now = T0 + timedelta(seconds=70)
    assert await tick(db, engine, clock.now) == 2
    async with db.unit_of_work() as uow:
        await uow.session.execute(text(
            "UPDATE saga_instances SET current_step = 1 WHERE id = :id"), {"id": first})
        await uow.commit()
    await sample_sagas(db, engine.definitions, metrics, clock=lambda: T0 + timedelta(seconds=71))
    assert value(registry, "saga_overdue") == 0
    assert value(registry, "saga_running", step="reserve_stock") == 1
    assert value(registry, "saga_running", step="authorize_payment") == 1


async def test_after_commit_keeps_a_released_savepoints_callbacks_and_drops_a_rolled_back_ones(
        db: Database) -> None:
    ran: list[str] = []
    async with db.unit_of_work() as uow:
        await uow.session.execute(text("SELECT 1"))
        after_commit(uow.session, lambda: ran.append("outer"))
        with pytest.raises(RuntimeError):
            async with uow.session.begin_nested():
                after_commit(uow.session, lambda: ran.append("rolled back savepoint"))
                raise RuntimeError
        async with uow.session.begin_nested():
            after_commit(uow.session, lambda: ran.append("released savepoint"))
        assert ran == []  # a released savepoint is not a commit
        await uow.commit()
    assert ran == ["outer", "released savepoint"]
    async with db.unit_of_work() as uow:
        await uow.session.execute(text("SELECT 1"))
        after_commit(uow.session, lambda: ran.append("rolled back"))
    async with db.unit_of_work() as uow:  # nothing left over for the next transaction
        await uow.session.execute(text("SELECT 1"))
        await uow.commit()
    assert ran == ["outer", "released savepoint"]
