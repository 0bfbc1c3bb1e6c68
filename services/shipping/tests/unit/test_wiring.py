from datetime import timedelta

import pytest
from chassis.messaging.envelope import Envelope, PoisonMessage
from contracts.orders.v1 import OrderApproved
from contracts.shipping.v1 import CancelShipment, CreateShipment, ReleaseShipment
from shipping.app import messaging
from shipping.entrypoints.consumers import parse
from shipping.settings import ShippingSettings


def test_settings_come_from_shipping_prefixed_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = ShippingSettings()
    assert (defaults.dispatch_after_s, defaults.in_transit_after_s,
            defaults.deliver_after_s) == (30, 60, 120)
    assert defaults.carrier_interval_s > 0 and defaults.api_prefix == "/api/shipping"
    monkeypatch.setenv("SHIPPING_DISPATCH_AFTER_S", "0.5")
    monkeypatch.setenv("SHIPPING_DELIVER_AFTER_S", "2")
    monkeypatch.setenv("INVENTORY_DISPATCH_AFTER_S", "99")
    times = ShippingSettings().timetable()
    assert (times.to_dispatched, times.to_in_transit, times.to_delivered) == (
        timedelta(seconds=0.5), timedelta(seconds=60), timedelta(seconds=2))


def test_timers_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ShippingSettings(dispatch_after_s=0)


def test_placeholder_database_password_is_refused_outside_development() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        ShippingSettings(environment="production",
                         database_url="postgresql+asyncpg://shipping:changeme@db/shipping")


def test_messaging_declares_streams_and_handles_every_command() -> None:
    spec = messaging(ShippingSettings())
    assert spec.outbox is True
    streams = {s.name: (s.subjects, s.work_queue) for s in spec.streams}
    assert streams == {"SHIPPING_EVENTS": (["shipping.events.>"], False),
                       "SHIPPING_COMMANDS": (["shipping.commands.>"], True)}
    commands, orders = spec.consumers
    assert (commands.name, commands.stream, commands.subjects) == (
        "shipping-commands", "SHIPPING_COMMANDS", ["shipping.commands.>"])
    assert set(commands.handlers) == {CreateShipment.message_type(),
                                      CancelShipment.message_type(),
                                      ReleaseShipment.message_type()}
    # The approval releases the shipment (ADR 0054): only it is read of the orders' events.
    assert (orders.name, orders.stream, orders.subjects) == (
        "shipping-orders-events", "ORDERS_EVENTS", ["orders.events.order_approved"])
    assert set(orders.handlers) == {OrderApproved.message_type()}


def message(payload: dict) -> Envelope:
    return Envelope.new(CancelShipment.subject(), CancelShipment.message_type(), payload)


def test_parse_accepts_a_valid_command_and_ignores_unknown_fields() -> None:
    cmd = parse(CancelShipment, message({"shipment_id": "s1", "order_id": "o1", "new": 1}))
    assert cmd == CancelShipment(shipment_id="s1", order_id="o1")


@pytest.mark.parametrize("payload", [{}, {"shipment_id": "s1"},
                                     {"shipment_id": "", "order_id": "o1"},
                                     {"shipment_id": "x" * 201, "order_id": "o1"},
                                     {"shipment_id": 5, "order_id": "o1"}])
def test_parse_refuses_what_can_never_be_handled(payload: dict) -> None:
    with pytest.raises(PoisonMessage):
        parse(CancelShipment, message(payload))
