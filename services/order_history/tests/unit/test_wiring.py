import pytest
from chassis.messaging.envelope import Envelope, PoisonMessage, parse_payload
from contracts.orders.v1 import OrderApproved, OrderCancelled, OrderPlaced, OrderRejected
from contracts.payments.v1 import PaymentCaptured
from contracts.shipping.v1 import ShipmentCancellationRefused
from order_history.app import messaging
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
    assert consumers == {
        "order_history-orders": ("ORDERS_EVENTS", ["orders.events.>"]),
        "order_history-payments": ("PAYMENTS_EVENTS", ["payments.events.>"]),
        "order_history-shipping": ("SHIPPING_EVENTS", ["shipping.events.>"]),
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
