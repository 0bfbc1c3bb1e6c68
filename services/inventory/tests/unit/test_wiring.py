from datetime import timedelta

import pytest
from chassis.messaging.envelope import Envelope, PoisonMessage
from contracts.catalog.v1 import PriceChanged, ProductCreated, ProductDiscontinued, ProductUpdated
from contracts.inventory.v1 import (
    CommitReservation,
    ReleaseStock,
    ReserveStock,
    RestockReservation,
)
from contracts.orders.v1 import OrderApproved
from inventory.app import messaging
from inventory.entrypoints.consumers import parse
from inventory.settings import InventorySettings


def test_settings_come_from_inventory_prefixed_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = InventorySettings()
    assert (defaults.reservation_ttl_s, defaults.low_stock_threshold) == (900, 5)
    assert defaults.expiry_interval_s > 0 and defaults.api_prefix == "/api/inventory"
    monkeypatch.setenv("INVENTORY_RESERVATION_TTL_S", "60")
    monkeypatch.setenv("INVENTORY_LOW_STOCK_THRESHOLD", "2")
    monkeypatch.setenv("CATALOG_LOW_STOCK_THRESHOLD", "99")
    policy = InventorySettings().policy()
    assert (policy.reservation_ttl, policy.low_stock_threshold) == (timedelta(seconds=60), 2)


def test_placeholder_database_password_is_refused_outside_development() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        InventorySettings(environment="production",
                          database_url="postgresql+asyncpg://inventory:changeme@db/inventory")


def test_messaging_declares_streams_and_handles_every_catalog_event() -> None:
    spec = messaging(InventorySettings())
    assert spec.outbox is True
    streams = {s.name: (s.subjects, s.work_queue) for s in spec.streams}
    assert streams == {"INVENTORY_EVENTS": (["inventory.events.>"], False),
                       "INVENTORY_COMMANDS": (["inventory.commands.>"], True)}
    consumers = {c.name: c for c in spec.consumers}
    commands = consumers["inventory-commands"]
    assert (commands.stream, commands.subjects) == ("INVENTORY_COMMANDS",
                                                    ["inventory.commands.>"])
    assert set(commands.handlers) == {c.message_type() for c in
                                      (ReserveStock, ReleaseStock, CommitReservation,
                                       RestockReservation)}
    catalog = consumers["inventory-catalog-events"]
    assert (catalog.stream, catalog.subjects) == ("CATALOG_EVENTS", ["catalog.events.>"])
    # An event type without a handler would be dead-lettered: every catalog event has one.
    assert set(catalog.handlers) == {c.message_type() for c in
                                     (ProductCreated, ProductUpdated, PriceChanged,
                                      ProductDiscontinued)}
    # The approval commits the reservation (ADR 0054): only it is read of the orders' events.
    orders = consumers["inventory-orders-events"]
    assert (orders.stream, orders.subjects) == ("ORDERS_EVENTS",
                                                ["orders.events.order_approved"])
    assert set(orders.handlers) == {OrderApproved.message_type()}
    assert set(consumers) == {"inventory-commands", "inventory-catalog-events",
                              "inventory-orders-events"}


def message(payload: dict) -> Envelope:
    return Envelope.new(ReleaseStock.subject(), ReleaseStock.message_type(), payload)


def test_parse_accepts_a_valid_command_and_ignores_unknown_fields() -> None:
    cmd = parse(ReleaseStock, message({"reservation_id": "r1", "from_the_future": 1}))
    assert cmd == ReleaseStock(reservation_id="r1")


@pytest.mark.parametrize("payload", [{}, {"reservation_id": ""}, {"reservation_id": "x" * 201},
                                     {"reservation_id": 5}])
def test_parse_refuses_what_can_never_be_handled(payload: dict) -> None:
    with pytest.raises(PoisonMessage):
        parse(ReleaseStock, message(payload))
