import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest.mock import patch

import pytest
from chassis.broker_permissions import subject_matches
from chassis.messaging.envelope import Envelope, PoisonMessage, parse_payload
from contracts.base import Contract
from contracts.orders.v1 import (
    OrderApproved,
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    OrderRejected,
)
from contracts.payments.v1 import (
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
)
from contracts.shipping.v1 import (
    ShipmentCancellationRefused,
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentStatusChanged,
)
from order_history.app import messaging
from order_history.domain.model import Change, fold
from order_history.settings import OrderHistorySettings


def test_settings_come_from_the_order_history_prefixed_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert OrderHistorySettings().max_page_size == 100
    monkeypatch.setenv("ORDER_HISTORY_MAX_PAGE_SIZE", "10")
    monkeypatch.setenv("CATALOG_MAX_PAGE_SIZE", "5")
    assert OrderHistorySettings().max_page_size == 10


def test_the_api_lives_under_api_history() -> None:
    settings = OrderHistorySettings()
    assert settings.service_name == "order_history"
    assert settings.api_prefix == "/api/history"


def test_placeholder_database_password_is_refused_outside_development() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        OrderHistorySettings(environment="production",
                             database_url="postgresql+asyncpg://oh:changeme@db/order_history")


def test_messaging_consumes_three_streams_and_produces_nothing() -> None:
    spec = messaging(OrderHistorySettings())
    assert spec.outbox is False and spec.streams == []
    consumers = {c.name: (c.stream, c.subjects) for c in spec.consumers}
    # The saga steps' own events are not taken: the outcome tells their facts (ADR 0039).
    assert consumers == {
        "order_history-orders": ("ORDERS_EVENTS", ["orders.events.>"]),
        "order_history-payments": ("PAYMENTS_EVENTS", [
            "payments.events.payment_declined", "payments.events.payment_failed",
            "payments.events.payment_refunded", "payments.events.payment_voided"]),
        "order_history-shipping": ("SHIPPING_EVENTS", [
            "shipping.events.shipment_cancelled", "shipping.events.shipment_creation_failed",
            "shipping.events.shipment_status_changed"]),
    }
    by_name = {c.name: set(c.handlers) for c in spec.consumers}
    assert by_name["order_history-orders"] == {m.message_type() for m in (
        OrderPlaced, OrderApproved, OrderRejected, OrderCancelled)}
    assert len(by_name["order_history-payments"]) == 6
    assert PaymentCaptured.message_type() in by_name["order_history-payments"]
    assert ShipmentCancellationRefused.message_type() in by_name["order_history-shipping"]
    assert len(by_name["order_history-shipping"]) == 5


def test_a_payload_that_does_not_fit_its_contract_is_poison() -> None:
    env = Envelope.new(PaymentCaptured.subject(), PaymentCaptured.message_type(),
                       {"payment_id": "p", "order_id": "o"})
    with pytest.raises(PoisonMessage):
        parse_payload(PaymentCaptured, env)


AT = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _lives() -> list[list[Contract]]:
    """Orders as the saga makes them, each event in the order it is published: approved and
    then dispatched, declined, approved then cancelled and refunded."""
    def approved(o: str) -> list[Contract]:
        return [OrderPlaced(order_id=o, customer_id="alice", total="300", currency="KRW",
                            lines=[OrderLine(product_id="p", sku="S", name="N", quantity=1,
                                             unit_price="300")]),
                PaymentAuthorized(payment_id=f"pay-{o}", order_id=o, amount="300",
                                  currency="KRW", card_last4="4242"),
                ShipmentCreated(shipment_id=f"shp-{o}", order_id=o, customer_id="alice",
                                tracking_number="MS1"),
                PaymentCaptured(payment_id=f"pay-{o}", order_id=o, amount="300",
                                currency="KRW"),
                OrderApproved(order_id=o, customer_id="alice", total="300", currency="KRW",
                              amount_captured="300", tracking_number="MS1")]
    return [
        [*approved("o1"), ShipmentStatusChanged(shipment_id="shp-o1", order_id="o1",
                                                customer_id="alice", status="DISPATCHED",
                                                tracking_number="MS1")],
        [approved("o2")[0], PaymentDeclined(payment_id="pay-o2", order_id="o2",
                                            reason="card_declined"),
         OrderRejected(order_id="o2", customer_id="alice", reason="card_declined")],
        [*approved("o3"), OrderCancelled(order_id="o3", customer_id="alice", reason="mind"),
         ShipmentCancelled(shipment_id="shp-o3", order_id="o3"),
         PaymentRefunded(payment_id="pay-o3", order_id="o3", amount="300", currency="KRW")],
    ]


def _view(events: list[tuple[int, Contract]], handlers: dict) -> object:
    """The view ``fold`` makes of these events (each with its second of the order's life),
    through the consumers' own translations."""
    found: list[Change] = []

    async def capture(_session: object, change: Change) -> None:
        found.append(change)

    async def run() -> None:
        with patch("order_history.entrypoints.consumers.apply_change", capture):
            for i, event in events:
                env = Envelope.new(event.subject(), event.message_type(), event.to_payload())
                env = replace(env, occurred_at=AT + timedelta(seconds=i))
                await handlers[event.message_type()](None, env)

    asyncio.run(run())
    return fold(found[0].order_id, found)


def test_the_live_consumers_see_every_order_as_a_replay_of_every_event_does() -> None:
    """What the durable consumers skip (the saga steps' own events) changes no row: each
    order's view from the events their subjects let through equals its view from all."""
    specs = messaging(OrderHistorySettings()).consumers
    handlers = {t: h for spec in specs for t, h in spec.handlers.items()}

    def delivered(event: Contract) -> bool:
        return any(subject_matches(s, event.subject()) for spec in specs
                   for s in spec.subjects)

    skipped = 0
    for life in _lives():
        events = list(enumerate(life))
        live = [(i, e) for i, e in events if delivered(e)]
        skipped += len(events) - len(live)
        assert _view(live, handlers) == _view(events, handlers)
    assert skipped == 6  # three per approved order


def test_an_approval_tells_the_capture_and_the_shipment() -> None:
    specs = messaging(OrderHistorySettings()).consumers
    handlers = {t: h for spec in specs for t, h in spec.handlers.items()}
    [placed, *_, approved] = _lives()[0][:5]
    view = _view([(0, placed), (4, approved)], handlers)
    assert (view.status, view.payment_status, view.amount_captured, view.shipment_status,
            view.tracking_number) == ("APPROVED", "CAPTURED", Decimal("300"), "CREATED", "MS1")
