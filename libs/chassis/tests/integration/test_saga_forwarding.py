"""A forwarded saga step (ADR 0053) on real PostgreSQL: the charge's command carries the
shipment's, the payments side's chassis sends it when its handler stages the capture, and
the orchestrator awaits the decline or what the shipment answers.

The test plays payments with a real inbox consumer (the chassis's forwarding runs there) and
inventory and shipping by delivering their events, exactly as JetStream would.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from chassis.db import Database
from chassis.messaging.broker import Outgoing
from chassis.messaging.consumer import ConsumerSpec, InboxConsumer, Outcome
from chassis.messaging.envelope import (
    H_CAUSATION,
    H_CORRELATION,
    H_FORWARDED,
    H_MESSAGE_ID,
    H_THEN,
    H_TYPE,
    Envelope,
)
from chassis.messaging.forwarding import Forward
from chassis.messaging.memory import InMemoryBroker, MemoryDelivery
from chassis.messaging.metrics import MessagingMetrics
from chassis.messaging.outbox import stage
from chassis.messaging.relay import OutboxRelay
from chassis.messaging.runtime import Messaging, MessagingRuntime
from chassis.messaging.tables import inbox_table, outbox_table
from chassis.saga import SagaDefinition, SagaEngine, Status, Step, history, saga_tables
from chassis.testing import ManualClock, metadata_database_fixture
from contracts.base import Event
from contracts.inventory.v1 import (
    ReleaseStock,
    ReserveStock,
    StockLine,
    StockReserved,
)
from contracts.payments.v1 import ChargePayment, PaymentCaptured, PaymentDeclined, VoidPayment
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
T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def reserve(d: Data) -> ReserveStock:
    return ReserveStock(reservation_id=d["order_id"], order_id=d["order_id"],
                        lines=[StockLine(sku="A", quantity=1)])


def release(d: Data) -> ReleaseStock:
    return ReleaseStock(reservation_id=d["order_id"], reason=d["failure"]["reason"])


def charge(d: Data) -> ChargePayment:
    return ChargePayment(payment_id=f"pay-{d['order_id']}", order_id=d["order_id"],
                         customer_id="c1", amount="3000", currency="KRW",
                         payment_method_id="pm_1", card_last4="4242")


def void(d: Data) -> VoidPayment:
    return VoidPayment(payment_id=f"pay-{d['order_id']}", order_id=d["order_id"])


def ship(d: Data) -> CreateShipment:
    return CreateShipment(shipment_id=f"shp-{d['order_id']}", order_id=d["order_id"],
                          customer_id="c1",
                          address=ShippingAddress(name="Kim", line1="1 Main", city="Seoul",
                                                  postal_code="04524", country="KR"),
                          lines=[ShipmentLine(sku="A", quantity=1)])


def cancel(d: Data) -> CancelShipment:
    return CancelShipment(shipment_id=f"shp-{d['order_id']}", order_id=d["order_id"])


ORDER = SagaDefinition("order.forwarding", [
    Step("reserve_stock", reserve, success={"StockReserved.v1": None},
         failure={"StockReservationFailed.v1": None}, compensation=release, deadline_s=10),
    Step("charge_payment", charge, success={"PaymentCaptured.v1": None},
         failure={"PaymentDeclined.v1": None}, compensation=void, deadline_s=10,
         forward=True),
    Step("create_shipment", ship,
         success={"ShipmentCreated.v1": lambda d, p: {"tracking": p["tracking_number"]}},
         failure={"ShipmentCreationFailed.v1": None}, compensation=cancel, deadline_s=10),
])


db = metadata_database_fixture(metadata)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def engine(clock: ManualClock) -> SagaEngine:
    return SagaEngine([ORDER], clock=clock)


def captured(o: str) -> PaymentCaptured:
    return PaymentCaptured(payment_id=f"pay-{o}", order_id=o, amount="3000", currency="KRW")


def declined(o: str) -> PaymentDeclined:
    return PaymentDeclined(payment_id=f"pay-{o}", order_id=o, reason="card_declined")


class Platform:
    """The orchestrator's consumer (skipping forwarded events, as orders' does) and a
    payments consumer whose handler answers a charge with ``self.answer``."""

    def __init__(self, db: Database, url: str, engine: SagaEngine) -> None:
        self.url = url
        self.broker = InMemoryBroker()
        self.dead_letters = InMemoryBroker()
        self.relay = OutboxRelay(url, self.broker)
        self.metrics = MessagingMetrics(CollectorRegistry())
        self.orchestrator = InboxConsumer(
            ConsumerSpec("orders-saga-replies", "X_EVENTS", ["*.events.>"], engine.handlers(),
                         skip_forwarded=True),
            db, self.dead_letters, self.metrics)
        self.answer: type[Event] = PaymentCaptured
        self.payments = InboxConsumer(
            ConsumerSpec("payments-commands", "PAYMENTS_COMMANDS", ["payments.commands.>"],
                         {"ChargePayment.v1": self._charge}),
            db, self.dead_letters)
        self._seen = 0
        self._seq = 0

    async def _charge(self, session: Any, envelope: Envelope) -> None:
        o = envelope.payload["order_id"]
        event = captured(o) if self.answer is PaymentCaptured else declined(o)
        await stage(session, event, correlation_id=envelope.correlation_id,
                    causation_id=str(envelope.message_id))

    async def sent(self) -> list[Outgoing]:
        """What was published since the last call (through outbox and relay)."""
        await self.relay.relay_once()
        fresh = self.broker.messages[self._seen:]
        self._seen = len(self.broker.messages)
        return fresh

    def _delivery(self, message: Outgoing) -> MemoryDelivery:
        self._seq += 1
        return MemoryDelivery(message.subject, message.headers, message.payload, self._seq)

    async def deliver(self, consumer: InboxConsumer, message: Outgoing) -> str:
        return await consumer.process(self._delivery(message))

    async def reply(self, saga_id: uuid.UUID, event: Event) -> str:
        envelope = Envelope.new(event.subject(), event.message_type(), event.to_payload(),
                                correlation_id=str(saga_id))
        return await self.deliver(self.orchestrator, Outgoing(
            envelope.subject, envelope.body(), envelope.headers()))


@pytest.fixture
async def platform(db: Database, fresh_database: str,
                   engine: SagaEngine) -> AsyncIterator[Platform]:
    p = Platform(db, fresh_database, engine)
    yield p
    await p.relay.close()


def types(messages: list[Outgoing]) -> list[str]:
    return [m.headers[H_TYPE] for m in messages]


async def start(db: Database, engine: SagaEngine) -> uuid.UUID:
    saga_id = uuid.uuid4()
    async with db.unit_of_work() as uow:
        await engine.start(uow.session, ORDER, saga_id, {"order_id": str(saga_id)})
        await uow.commit()
    return saga_id


async def story(db: Database, saga_id: uuid.UUID) -> Any:
    async with db.unit_of_work() as uow:
        found = await history(uow.session, saga_id)
    assert found is not None
    return found


async def inbox_rows(db: Database, consumer: str) -> int:
    async with db.unit_of_work() as uow:
        return int((await uow.session.execute(
            text("SELECT count(*) FROM inbox WHERE consumer = :c"), {"c": consumer})).scalar_one())


async def at_charge(db: Database, engine: SagaEngine, platform: Platform
                    ) -> tuple[uuid.UUID, Outgoing]:
    """A saga whose stock is reserved: its ChargePayment, as payments receives it."""
    saga_id = await start(db, engine)
    o = str(saga_id)
    await platform.reply(saga_id, StockReserved(reservation_id=o, order_id=o,
                                                lines=[StockLine(sku="A", quantity=1)],
                                                expires_at="2026-12-05T10:00:00+00:00"))
    *_, command = await platform.sent()
    assert command.headers[H_TYPE] == "ChargePayment.v1"
    return saga_id, command


async def test_the_charges_receiver_sends_the_shipment_and_the_orchestrator_skips_the_capture(
        db: Database, engine: SagaEngine, platform: Platform) -> None:
    saga_id, command = await at_charge(db, engine, platform)
    o = str(saga_id)
    then = Forward.decode(command.headers[H_THEN])
    assert (then.on, then.subject, then.message_type, then.then) == (
        ("PaymentCaptured.v1",), "shipping.commands.create_shipment", "CreateShipment.v1", None)
    assert then.payload == ship({"order_id": o}).to_payload()

    assert await platform.deliver(platform.payments, command) == Outcome.HANDLED
    capture, shipment = await platform.sent()  # one transaction: the event, then the command
    assert types([capture, shipment]) == ["PaymentCaptured.v1", "CreateShipment.v1"]
    assert capture.headers[H_FORWARDED] == "CreateShipment.v1"
    assert shipment.headers[H_CORRELATION] == o
    assert shipment.headers[H_CAUSATION] == capture.headers[H_MESSAGE_ID]
    assert H_THEN not in shipment.headers and H_FORWARDED not in shipment.headers
    assert orjson.loads(shipment.payload) == then.payload

    # The orchestrator acks the forwarded capture unread: no inbox row, no transaction.
    before = await inbox_rows(db, "orders-saga-replies")
    assert await platform.deliver(platform.orchestrator, capture) == Outcome.FORWARDED
    assert await inbox_rows(db, "orders-saga-replies") == before
    assert platform.metrics.handled.labels(
        "orders-saga-replies", "PaymentCaptured.v1", "forwarded")._value.get() == 1

    assert await platform.reply(saga_id, ShipmentCreated(
        shipment_id=f"shp-{o}", order_id=o, customer_id="c1",
        tracking_number="TRK1")) == Outcome.HANDLED
    assert await platform.sent() == []  # nothing more to send
    s = await story(db, saga_id)
    assert s.instance.status == Status.COMPLETED
    assert s.instance.data["tracking"] == "TRK1"
    assert s.instance.version == 3  # started, StockReserved, ShipmentCreated: no capture
    sent = [e for e in s.events if e.kind == "command_sent"]
    assert [(e.step, e.message_type, e.detail.get("forwards")) for e in sent] == [
        ("reserve_stock", "ReserveStock.v1", None),
        ("charge_payment", "ChargePayment.v1", ["CreateShipment.v1"])]


async def test_a_decline_sends_nothing_on_and_undoes_the_stock(
        db: Database, engine: SagaEngine, platform: Platform) -> None:
    saga_id, command = await at_charge(db, engine, platform)
    platform.answer = PaymentDeclined
    assert await platform.deliver(platform.payments, command) == Outcome.HANDLED
    [decline] = await platform.sent()
    assert decline.headers[H_TYPE] == "PaymentDeclined.v1"
    assert H_FORWARDED not in decline.headers
    assert await platform.deliver(platform.orchestrator, decline) == Outcome.HANDLED
    assert types(await platform.sent()) == ["ReleaseStock.v1"]
    s = await story(db, saga_id)
    assert s.instance.status == Status.COMPENSATED
    assert s.instance.data["failure"]["step"] == "charge_payment"


async def test_a_shipment_that_cannot_be_made_undoes_the_charge_and_the_stock(
        db: Database, engine: SagaEngine, platform: Platform) -> None:
    saga_id, command = await at_charge(db, engine, platform)
    o = str(saga_id)
    await platform.deliver(platform.payments, command)
    capture, _ = await platform.sent()
    await platform.deliver(platform.orchestrator, capture)
    assert await platform.reply(saga_id, ShipmentCreationFailed(
        shipment_id=f"shp-{o}", order_id=o, reason="invalid_address")) == Outcome.HANDLED
    # The capture never reached the saga, yet the shipment's failure means it happened.
    assert types(await platform.sent()) == ["VoidPayment.v1", "ReleaseStock.v1"]
    s = await story(db, saga_id)
    assert s.instance.status == Status.COMPENSATED
    assert s.instance.data["failure"] == {"step": "create_shipment",
                                          "reason": "invalid_address",
                                          "message_type": "ShipmentCreationFailed.v1"}


async def test_the_steps_sent_together_share_a_deadline_resend_the_first_and_undo_all(
        db: Database, engine: SagaEngine, platform: Platform, clock: ManualClock) -> None:
    saga_id, _ = await at_charge(db, engine, platform)

    async def tick(at: datetime) -> int:
        async with db.unit_of_work() as uow:
            n = await engine.tick(uow.session, at)
            await uow.commit()
        return n

    assert await tick(T0 + timedelta(seconds=19)) == 0  # 10 s for each of the two steps
    assert await tick(T0 + timedelta(seconds=21)) == 1
    [resent] = await platform.sent()
    assert resent.headers[H_TYPE] == "ChargePayment.v1"
    assert Forward.decode(resent.headers[H_THEN]).message_type == "CreateShipment.v1"
    assert await tick(T0 + timedelta(seconds=60)) == 0  # the resend waits twice as long
    assert await tick(T0 + timedelta(seconds=62)) == 1
    await platform.sent()
    assert await tick(T0 + timedelta(seconds=143)) == 1  # resends used up
    # Either of the two may have taken effect: both are undone, and the stock.
    assert types(await platform.sent()) == ["CancelShipment.v1", "VoidPayment.v1",
                                            "ReleaseStock.v1"]
    s = await story(db, saga_id)
    assert s.instance.status == Status.COMPENSATED
    assert s.instance.data["failure"] == {"step": "charge_payment", "reason": "timed_out"}


async def test_a_capture_that_reaches_the_saga_moves_it_on_without_a_second_shipment(
        db: Database, engine: SagaEngine, platform: Platform) -> None:
    """An orchestrator that reads forwarded events (or a capture an older release sent
    unmarked): the step is done, the receiver already sent the next command."""
    saga_id, _ = await at_charge(db, engine, platform)
    o = str(saga_id)
    assert await platform.reply(saga_id, captured(o)) == Outcome.HANDLED
    assert await platform.sent() == []
    s = await story(db, saga_id)
    assert (s.instance.status, s.instance.current_step) == (Status.RUNNING, 2)
    await platform.reply(saga_id, ShipmentCreated(shipment_id=f"shp-{o}", order_id=o,
                                                  customer_id="c1", tracking_number="T"))
    assert (await story(db, saga_id)).instance.status == Status.COMPLETED


async def test_a_command_whose_forward_is_malformed_is_dead_lettered_and_writes_nothing(
        db: Database, platform: Platform) -> None:
    o = str(uuid.uuid4())
    envelope = Envelope.new("payments.commands.charge_payment", "ChargePayment.v1",
                            charge({"order_id": o}).to_payload(), correlation_id=o,
                            then='{"on": "PaymentCaptured.v1"}')
    assert await platform.deliver(platform.payments, Outgoing(
        envelope.subject, envelope.body(), envelope.headers())) == Outcome.DEAD_LETTERED
    assert await platform.sent() == []
    assert await inbox_rows(db, "payments-commands") == 0


async def test_a_forward_the_receiver_may_not_publish_is_dead_lettered_and_writes_nothing(
        db: Database, engine: SagaEngine, platform: Platform) -> None:
    """The service's runtime holds its consumers to its Messaging.sends: a forward elsewhere
    would be refused by the broker and wait in the outbox for ever."""
    _, command = await at_charge(db, engine, platform)

    def consumer_of(sends: list[str]) -> InboxConsumer:
        """The payments-like service's consumer, as its MessagingRuntime builds it."""
        spec = Messaging(outbox=True, sends=sends, consumers=[ConsumerSpec(
            "payments-commands", "PAYMENTS_COMMANDS", ["payments.commands.>"],
            {"ChargePayment.v1": platform._charge})])
        runtime = MessagingRuntime(spec, db, platform.url, MessagingMetrics(CollectorRegistry()))
        [consumer] = runtime.inbox_consumers(platform.dead_letters)
        return consumer

    inventory_like = consumer_of(["inventory.commands.>"])
    assert await platform.deliver(inventory_like, command) == Outcome.DEAD_LETTERED
    [dead] = platform.dead_letters.messages
    assert "shipping.commands.create_shipment" in dead.headers["Mercato-Dlq-Error"]
    assert await platform.sent() == []
    allowed = consumer_of(["shipping.commands.create_shipment"])
    assert await platform.deliver(allowed, command) == Outcome.HANDLED
    assert types(await platform.sent()) == ["PaymentCaptured.v1", "CreateShipment.v1"]
