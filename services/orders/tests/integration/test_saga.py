"""The order saga on real PostgreSQL: an order placed through the service layer, its
commands relayed out of the outbox, the other services' events fed to the real inbox
consumers (one per stream), and the order following the saga in the same transactions."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chassis.db import Database
from chassis.errors import Conflict
from chassis.messaging.consumer import Outcome
from chassis.messaging.envelope import H_THEN, Envelope
from chassis.messaging.forwarding import Forward
from chassis.saga import SagaEngine, Status, history
from chassis.testing import ManualClock
from contracts.inventory.v1 import StockLine, StockReservationFailed, StockReserved
from contracts.payments.v1 import (
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
)
from contracts.shipping.v1 import (
    ShipmentCancellationRefused,
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentCreationFailed,
)
from orders.adapters.repository import OrdersRepository
from orders.domain.commands import OrderItem, PaymentChoice, PlaceOrder
from orders.service_layer import handlers
from orders.service_layer.saga import DEFINITIONS, SAGA_NAME_V1, SAGA_NAME_V2
from orders_kit import (
    MUG,
    TEA,
    Services,
    StubUpstreams,
    count,
    database_text,
    order_row,
    payload,
    types,
)
from sqlalchemy import text

pytestmark = pytest.mark.integration

CARD = "4242424242424242"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def engine(clock: ManualClock) -> SagaEngine:
    return SagaEngine(DEFINITIONS, clock=clock)


@pytest.fixture
async def services(db: Database, database_url: str,
                   engine: SagaEngine) -> AsyncIterator[Services]:
    s = Services(db, database_url, engine)
    yield s
    await s.relay.close()


def principal(subject: str = "alice"):  # a verified token's principal
    from chassis.auth import Principal

    return Principal(subject=subject, roles=frozenset({"customer"}), email="alice@example.com")


async def place(db: Database, engine: SagaEngine, key: str = "k1") -> str:
    command = PlaceOrder((OrderItem(MUG, 2), OrderItem(TEA, 1)), "addr-1",
                         PaymentChoice(card_number=CARD))
    placed = await handlers.place_order(db.unit_of_work(), StubUpstreams(), engine,  # type: ignore[arg-type]
                                        principal(), command, idempotency_key=key,
                                        authorization=None)
    return placed.order.id


def reserved(o: str) -> StockReserved:
    return StockReserved(reservation_id=o, order_id=o, lines=[StockLine(sku="MUG-1", quantity=2)],
                         expires_at="2026-11-22T10:00:00+00:00")


def authorized(o: str) -> PaymentAuthorized:
    return PaymentAuthorized(payment_id=f"pay-{o}", order_id=o, amount="29300",
                             currency="KRW", card_last4="4242")


def shipped(o: str) -> ShipmentCreated:
    return ShipmentCreated(shipment_id=f"shp-{o}", order_id=o, customer_id="alice",
                           tracking_number="MS123")


def captured(o: str) -> PaymentCaptured:
    return PaymentCaptured(payment_id=f"pay-{o}", order_id=o, amount="29300", currency="KRW")


async def as_started_by_an_older_release(db: Database, order_id: str) -> None:
    """The saga, at its first step, as a release before ADR 0051 started it: on the
    definition ``order`` (stock, authorize, shipment, capture)."""
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE saga_instances SET saga_name = :name WHERE id = :id"),
                           {"name": SAGA_NAME_V1, "id": uuid.UUID(order_id)})


async def saga(db: Database, order_id: str):
    async with db.unit_of_work() as uow:
        found = await history(uow.session, uuid.UUID(order_id))
    assert found is not None
    return found


async def token_in(db: Database) -> dict[str, int]:
    """Rows holding a payment method id, per table (the outbox's AuthorizePayment aside)."""
    async with db.engine.connect() as conn:
        return {table: (await conn.execute(text(
            f"SELECT count(*) FROM {table} t WHERE CAST({column} AS text) LIKE '%pm\\_%'")
            )).scalar_one()
            for table, column in [("orders", "t.*"), ("saga_instances", "t.data"),
                                  ("saga_events", "t.detail")]}


async def card_anywhere(db: Database) -> bool:
    """The card number in any row of any table (the outbox included), or the payment
    method still in the saga's data or history."""
    return CARD in await database_text(db) or any((await token_in(db)).values())


async def test_happy_path_approves_and_commits_the_reservation(
        db: Database, engine: SagaEngine, services: Services) -> None:
    o = await place(db, engine)
    first = await services.sent()
    assert types(first) == ["OrderPlaced.v1", "ReserveStock.v1"]
    assert payload(first[0])["total"] == "29300"
    assert payload(first[0])["customer_email"] == "alice@example.com"
    assert payload(first[1])["lines"] == [{"sku": "MUG-1", "quantity": 2},
                                          {"sku": "TEA-1", "quantity": 1}]
    # The card was exchanged for a payment method before anything was stored: the number is
    # nowhere, and only the saga's data holds the token (for ChargePayment).
    assert CARD not in await database_text(db)
    assert await token_in(db) == {"orders": 0, "saga_instances": 1, "saga_events": 0}
    sent = []
    assert await services.reply(o, reserved(o)) == Outcome.HANDLED
    sent += await services.sent()
    # Payments sends the shipment's command itself once the charge is captured (ADR 0053):
    # the charge carries it, and the capture, marked as forwarded, is acked unread here.
    forwarded_capture = Envelope.new(captured(o).subject(), captured(o).message_type(),
                                     captured(o).to_payload(), correlation_id=o,
                                     forwarded="CreateShipment.v1")
    assert await services.reply(o, captured(o), forwarded_capture) == Outcome.FORWARDED
    assert await services.sent() == []
    assert await services.reply(o, shipped(o)) == Outcome.HANDLED
    sent += await services.sent()
    # The approval is one event, not two commands and an event (ADR 0054): inventory commits
    # the reservation and shipping releases the shipment it names.
    assert types(sent) == ["ChargePayment.v1", "OrderApproved.v1"]
    shipment = Forward.decode(sent[0].headers[H_THEN])
    assert (shipment.on, shipment.subject) == (("PaymentCaptured.v1",),
                                               "shipping.commands.create_shipment")
    assert shipment.payload["shipment_id"] == f"shp-{o}"
    assert shipment.payload["address"]["city"] == "Seoul"
    charge = payload(sent[0])
    assert (charge["payment_id"], charge["amount"], charge["customer_id"],
            charge["card_last4"]) == (f"pay-{o}", "29300", "alice", "4242")
    assert charge["payment_method_id"].startswith("pm_") and "card_number" not in charge
    approval = payload(sent[1])
    assert (approval["reservation_id"], approval["shipment_id"]) == (o, f"shp-{o}")
    # What the read model shows of the payment and the shipment travels in the outcome.
    assert {k: approval[k] for k in ("total", "amount_captured", "tracking_number")
            } == {"total": "29300", "amount_captured": "29300", "tracking_number": "MS123"}
    assert all(m.headers["Mercato-Correlation-Id"] == o for m in sent)
    row = await order_row(db, o)
    assert (row["status"], row["reason"]) == ("APPROVED", None)
    story = await saga(db, o)
    assert story.instance.status == Status.COMPLETED
    assert story.instance.data["tracking_number"] == "MS123"
    assert "payment_method_id" not in story.instance.data
    assert story.instance.data["card_last4"] == "4242"
    assert [e.kind for e in story.events][-2:] == ["completed", "order_approved"]
    assert await card_anywhere(db) is False


async def test_declined_card_rejects_releases_stock_and_voids_nothing(
        db: Database, engine: SagaEngine, services: Services) -> None:
    o = await place(db, engine)
    await services.reply(o, reserved(o))
    await services.sent()
    await services.reply(o, PaymentDeclined(payment_id=f"pay-{o}", order_id=o,
                                            reason="card_declined"))
    after = await services.sent()
    assert types(after) == ["ReleaseStock.v1", "OrderRejected.v1"]
    assert payload(after[0]) == {"reservation_id": o, "reason": "card_declined"}
    assert payload(after[1])["reason"] == "card_declined"
    row = await order_row(db, o)
    assert (row["status"], row["reason"]) == ("REJECTED", "card_declined")
    assert "payment_method_id" not in (await saga(db, o)).instance.data


async def test_stock_shortage_rejects_with_nothing_to_undo(
        db: Database, engine: SagaEngine, services: Services) -> None:
    o = await place(db, engine)
    await services.sent()
    await services.reply(o, StockReservationFailed(reservation_id=o, order_id=o,
                                                   reason="insufficient_stock",
                                                   short_skus=["MUG-1"]))
    assert types(await services.sent()) == ["OrderRejected.v1"]
    row = await order_row(db, o)
    assert (row["status"], row["reason"]) == ("REJECTED", "insufficient_stock")
    # The saga ended before payments was asked: the card is forgotten all the same.
    assert await card_anywhere(db) is False


async def test_shipment_failure_gives_the_charge_back_and_releases_the_stock(
        db: Database, engine: SagaEngine, services: Services) -> None:
    o = await place(db, engine)
    await services.reply(o, reserved(o))
    await services.reply(o, captured(o))
    await services.sent()
    await services.reply(o, ShipmentCreationFailed(shipment_id=f"shp-{o}", order_id=o,
                                                   reason="invalid_address"))
    after = await services.sent()
    # VoidPayment of a captured charge is its refund (payments, ADR 0051).
    assert types(after) == ["VoidPayment.v1", "ReleaseStock.v1", "OrderRejected.v1"]
    assert payload(after[0])["payment_id"] == f"pay-{o}"
    row = await order_row(db, o)
    assert (row["status"], row["reason"]) == ("REJECTED", "invalid_address")
    assert await card_anywhere(db) is False


async def test_a_saga_an_older_release_started_runs_on_its_own_definition(
        db: Database, engine: SagaEngine, services: Services) -> None:
    """Sagas in flight at the upgrade to ADR 0051 keep their four steps: authorize, then
    the shipment, then the capture; a failed capture undoes all three before it."""
    o = await place(db, engine)
    await as_started_by_an_older_release(db, o)
    await services.sent()
    sent = []
    for event in (reserved(o), authorized(o), shipped(o)):
        await services.reply(o, event)
        sent += await services.sent()
    assert types(sent) == ["AuthorizePayment.v2", "CreateShipment.v1", "CapturePayment.v1"]
    await services.reply(o, PaymentFailed(payment_id=f"pay-{o}", order_id=o,
                                          operation="capture", reason="authorization_expired"))
    assert types(await services.sent()) == ["CancelShipment.v1", "VoidPayment.v1",
                                            "ReleaseStock.v1", "OrderRejected.v1"]
    assert (await order_row(db, o))["reason"] == "authorization_expired"
    assert (await saga(db, o)).instance.saga_name == SAGA_NAME_V1


async def test_an_older_releases_saga_completes_on_its_own_definition(
        db: Database, engine: SagaEngine, services: Services) -> None:
    o = await place(db, engine)
    await as_started_by_an_older_release(db, o)
    for event in (reserved(o), authorized(o), shipped(o)):
        await services.reply(o, event)
    await services.sent()
    await services.reply(o, captured(o))
    [approval] = await services.sent()
    assert types([approval]) == ["OrderApproved.v1"]
    assert (payload(approval)["reservation_id"], payload(approval)["shipment_id"]) == (
        o, f"shp-{o}")
    assert (await order_row(db, o))["status"] == "APPROVED"
    assert await card_anywhere(db) is False


async def test_duplicate_and_late_replies_are_harmless(
        db: Database, engine: SagaEngine, services: Services) -> None:
    o = await place(db, engine)
    env = services.envelope(o, reserved(o))
    assert await services.reply(o, reserved(o), env) == Outcome.HANDLED
    assert await services.reply(o, reserved(o), env) == Outcome.DUPLICATE  # same message
    assert await services.reply(o, reserved(o)) == Outcome.DROPPED  # republished: counted
    for event in (captured(o), shipped(o)):
        await services.reply(o, event)
    await services.reply(o, shipped(o))  # after the end: recorded, changes nothing
    await services.reply(o, captured(o))
    # Not one of our sagas: dead-lettered for an operator.
    assert await services.reply(str(uuid.uuid4()), reserved(o)) == Outcome.DEAD_LETTERED
    sent = types(await services.sent())
    assert sent.count("OrderApproved.v1") == 1 and "CommitReservation.v1" not in sent
    assert sent.count("ChargePayment.v1") == 1
    assert (await order_row(db, o))["status"] == "APPROVED"
    ignored = [e for e in (await saga(db, o)).events
               if e.kind == "reply" and not e.detail["accepted"]]
    assert len(ignored) == 3


async def test_a_timed_out_step_is_compensated_by_the_reconciler_and_the_order_rejected(
        db: Database, engine: SagaEngine, services: Services, clock: ManualClock) -> None:
    o = await place(db, engine)
    await services.reply(o, reserved(o))
    await services.sent()

    async def tick(after_s: float) -> int:
        async with db.unit_of_work() as uow:
            n = await engine.tick(uow.session, clock.now + timedelta(seconds=after_s))
            await uow.commit()
        return n

    # The charge and the shipment it carries share a deadline (10 s each), then two resends
    # (waiting 40 s, then 80 s).
    assert await tick(19) == 0
    assert await tick(21) == 1 and await tick(62) == 1
    assert types(await services.sent()) == ["ChargePayment.v1", "ChargePayment.v1"]
    # After 80 s more, gave up: either may have taken effect, so the shipment is cancelled
    # (a tombstone refuses it if it comes late), the charge voided (likewise; refunded,
    # should it have been taken after all), the stock released.
    assert await tick(143) == 1
    assert types(await services.sent()) == ["CancelShipment.v1", "VoidPayment.v1",
                                            "ReleaseStock.v1", "OrderRejected.v1"]
    row = await order_row(db, o)
    assert (row["status"], row["reason"]) == ("REJECTED", "charge_payment_timed_out")
    assert await card_anywhere(db) is False


async def test_a_saga_an_older_release_started_with_a_card_resends_v1_then_forgets_it(
        db: Database, engine: SagaEngine, services: Services, clock: ManualClock) -> None:
    """An upgrade can meet a saga whose data holds card_number: its re-sent AuthorizePayment
    is v1 (payments vaults the card on receipt), and the card leaves the data on the answer."""
    o = await place(db, engine)
    await as_started_by_an_older_release(db, o)
    async with db.engine.begin() as conn:
        await conn.execute(text(
            "UPDATE saga_instances SET data = (data - 'payment_method_id' - 'card_last4') || "
            "jsonb_build_object('card_number', CAST(:card AS text)) WHERE id = :id"),
            {"card": CARD, "id": uuid.UUID(o)})
    await services.sent()
    await services.reply(o, reserved(o))
    [first] = await services.sent()
    assert (first.headers["Mercato-Type"], payload(first)["card_number"]) == (
        "AuthorizePayment.v1", CARD)
    await services.reply(o, authorized(o))
    assert "card_number" not in (await saga(db, o)).instance.data
    for event in (shipped(o), captured(o)):
        await services.reply(o, event)
    await services.sent()
    assert (await order_row(db, o))["status"] == "APPROVED"
    async with db.engine.begin() as conn:  # the outbox row has been relayed: purge it
        await conn.execute(text("DELETE FROM outbox WHERE message_type = 'AuthorizePayment.v1'"))
    assert await card_anywhere(db) is False


async def test_a_saga_started_before_adr_0053_sends_the_shipment_itself_on_the_capture(
        db: Database, engine: SagaEngine, services: Services) -> None:
    """An ``order.v2`` saga in flight at the upgrade: its ChargePayment carried no shipment,
    so payments' capture comes unmarked, is handled, and orders sends CreateShipment."""
    o = await place(db, engine)
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE saga_instances SET saga_name = :name WHERE id = :id"),
                           {"name": SAGA_NAME_V2, "id": uuid.UUID(o)})
    await services.sent()
    await services.reply(o, reserved(o))
    [charge] = await services.sent()
    assert charge.headers["Mercato-Type"] == "ChargePayment.v1"
    assert H_THEN not in charge.headers
    assert await services.reply(o, captured(o)) == Outcome.HANDLED
    [shipment] = await services.sent()
    assert (shipment.headers["Mercato-Type"], payload(shipment)["shipment_id"]) == (
        "CreateShipment.v1", f"shp-{o}")
    await services.reply(o, shipped(o))
    await services.sent()
    assert (await order_row(db, o))["status"] == "APPROVED"


async def test_cancel_of_a_pending_order_undoes_the_completed_saga(
        db: Database, engine: SagaEngine, services: Services) -> None:
    o = await place(db, engine)
    await services.reply(o, reserved(o))
    cancelled = await handlers.request_cancel(db.unit_of_work(), principal(), o, engine)
    assert (cancelled.status, cancelled.cancel_requested) == ("PENDING", True)
    for event in (captured(o), shipped(o)):
        await services.reply(o, event)
    sent = types(await services.sent())
    assert sent[-4:] == ["CancelShipment.v1", "RefundPayment.v1", "ReleaseStock.v1",
                         "OrderCancelled.v1"]
    assert "CommitReservation.v1" not in sent and "OrderApproved.v1" not in sent
    row = await order_row(db, o)
    assert (row["status"], row["reason"]) == ("CANCELLED", "cancelled_by_customer")
    assert await count(db, "orders") == 1


async def approved(db: Database, engine: SagaEngine, services: Services) -> str:
    o = await place(db, engine)
    for event in (reserved(o), captured(o), shipped(o)):
        await services.reply(o, event)
    await services.sent()
    assert (await order_row(db, o))["status"] == "APPROVED"
    return o


async def test_cancel_of_an_approved_order_asks_shipping_then_refunds_and_restocks(
        db: Database, engine: SagaEngine, services: Services) -> None:
    o = await approved(db, engine, services)
    asked = await handlers.request_cancel(db.unit_of_work(), principal(), o, engine)
    assert (asked.status, asked.cancel_requested) == ("APPROVED", True)
    again = await handlers.request_cancel(db.unit_of_work(), principal(), o, engine)
    assert again.cancel_requested is True
    sent = await services.sent()
    assert types(sent) == ["CancelShipment.v1"]  # once, though asked twice
    assert payload(sent[0])["shipment_id"] == f"shp-{o}"
    # Nothing is refunded until shipping has cancelled: the parcel may have left already.
    assert (await order_row(db, o))["status"] == "APPROVED"
    done = ShipmentCancelled(shipment_id=f"shp-{o}", order_id=o)
    assert await services.reply(o, done) == Outcome.HANDLED
    # Shipping's answer again (a new message id): nothing awaits it now; counted, not applied.
    assert await services.reply(o, done, services.envelope(o, done)) == Outcome.DROPPED
    sent = await services.sent()
    assert types(sent) == ["RefundPayment.v1", "RestockReservation.v1", "OrderCancelled.v1"]
    assert payload(sent[0])["payment_id"] == f"pay-{o}"
    assert payload(sent[1]) == {"reservation_id": o, "reason": "cancelled_by_customer"}
    row = await order_row(db, o)
    assert (row["status"], row["reason"]) == ("CANCELLED", "cancelled_by_customer")
    kinds = [e.kind for e in (await saga(db, o)).events]
    assert kinds[-2:] == ["cancel_requested", "order_cancelled"]
    with pytest.raises(Conflict):
        await handlers.request_cancel(db.unit_of_work(), principal(), o, engine)


async def test_cancel_after_dispatch_is_refused_and_the_order_stays_approved(
        db: Database, engine: SagaEngine, services: Services) -> None:
    o = await approved(db, engine, services)
    await handlers.request_cancel(db.unit_of_work(), principal(), o, engine)
    await services.sent()
    await services.reply(o, ShipmentCancellationRefused(shipment_id=f"shp-{o}", order_id=o,
                                                        status="DISPATCHED"))
    assert await services.sent() == []  # no refund, no restock
    row = await order_row(db, o)
    assert (row["status"], row["reason"], row["cancel_requested"]) == (
        "APPROVED", "already_dispatched", False)
    with pytest.raises(Conflict):
        await handlers.request_cancel(db.unit_of_work(), principal(), o, engine)


async def test_shipment_cancelled_by_a_compensation_changes_no_order(
        db: Database, engine: SagaEngine, services: Services) -> None:
    o = await approved(db, engine, services)
    # No cancel was asked: a stray ShipmentCancelled (a rejected order's compensation, say)
    # must not refund an approved order.
    await services.reply(o, ShipmentCancelled(shipment_id=f"shp-{o}", order_id=o))
    assert await services.sent() == []
    assert (await order_row(db, o))["status"] == "APPROVED"


async def test_the_sagas_end_writes_the_order_with_the_saga_in_one_statement(
        db: Database, database_url: str, engine: SagaEngine, pg_server: Any) -> None:
    """The reply that ends the saga writes the order's new status with the saga's state, its
    history and its commands: one statement before the COMMIT (ADR 0052). Its round trips:
    the inbox claim with its BEGIN, the saga's load, the order's load, one write, COMMIT."""
    orders = [await place(db, engine, key=f"k{i}") for i in range(2)]
    with pg_server.statements_logged(database_url.rsplit("/", 1)[1]) as logged:
        one = Database(database_url, pool_size=1)
        alone = Services(one, database_url, engine)
        try:
            pid = (await one.fetch_once("SELECT pg_backend_pid() AS pid"))[0]["pid"]
            for o in orders:  # the first order warms the connection (asyncpg's type queries)
                for event in (reserved(o), captured(o)):
                    assert await alone.reply(o, event) == Outcome.HANDLED
                before = len(logged(pid))
                assert await alone.reply(o, shipped(o)) == Outcome.HANDLED
                sent = [" ".join(s.split(": ", 1)[1].split()) for s in logged(pid)[before:]]
        finally:
            await alone.relay.close()
            await one.dispose()
    writes = [s for s in sent if s.startswith(("WITH", "INSERT", "UPDATE"))]
    assert len(writes) == 1 and len(sent) == 5, sent
    assert all(part in writes[0] for part in (
        "UPDATE orders", "UPDATE saga_instances", "INSERT INTO saga_events",
        "INSERT INTO outbox")), writes
    assert [(await order_row(db, o))["status"] for o in orders] == ["APPROVED"] * 2


async def test_placing_an_order_writes_it_as_one_statement_sent_alone(
        db: Database, database_url: str, engine: SagaEngine, pg_server: Any) -> None:
    """What placing an order reads is one statement, and what it writes (the order, its
    OrderPlaced, its saga and the saga's first command) another, with no BEGIN and no COMMIT
    around it (ADR 0055); a repeat of the key writes nothing and is answered with the first
    order."""
    with pg_server.statements_logged(database_url.rsplit("/", 1)[1]) as logged:
        one = Database(database_url, pool_size=1)
        try:
            pid = (await one.fetch_once("SELECT pg_backend_pid() AS pid"))[0]["pid"]
            await place(one, engine, key="warm")  # asyncpg's type queries on a new connection
            before = len(logged(pid))
            first = await place(one, engine, key="k1")
            sent = [" ".join(s.split(": ", 1)[1].split()) for s in logged(pid)[before:]]
            assert await place(one, engine, key="k1") == first
        finally:
            await one.dispose()
    # One read (the key and the replicas together, ADR 0055), one write.
    assert len(sent) == 2 and sent[0].startswith("SELECT 'order' AS part"), sent
    writes = [s for s in sent if s.startswith(("WITH", "INSERT", "UPDATE"))]
    assert len(writes) == 1 and not [s for s in sent if s.startswith(("BEGIN", "COMMIT"))], sent
    assert all(part in writes[0] for part in (
        "INSERT INTO orders", "INSERT INTO saga_instances", "INSERT INTO saga_events",
        "INSERT INTO outbox")), writes
    async with db.engine.connect() as conn:
        counts = (await conn.execute(text(
            "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM saga_instances), "
            "(SELECT count(*) FROM outbox)"))).one()
    assert tuple(counts) == (2, 2, 4)  # the warm-up's and k1's, each with two messages


async def test_a_key_taken_between_the_lookup_and_the_write_is_answered_with_its_order(
        db: Database, engine: SagaEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race the unique key settles: the lookup saw no order, a concurrent request then
    committed one under the key; this request's statement fails as a whole and it answers
    with the order that won."""
    won = await place(db, engine, key="race")
    real = OrdersRepository.by_idempotency_key
    calls = 0

    async def unseen_at_first(self: OrdersRepository, customer: str, key: str) -> Any:
        nonlocal calls
        calls += 1
        return None if calls == 1 else await real(self, customer, key)

    monkeypatch.setattr(OrdersRepository, "by_idempotency_key", unseen_at_first)
    assert await place(db, engine, key="race") == won
    assert calls == 2
    async with db.engine.connect() as conn:
        counts = (await conn.execute(text(
            "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM saga_instances), "
            "(SELECT count(*) FROM outbox)"))).one()
    assert tuple(counts) == (1, 1, 2)
