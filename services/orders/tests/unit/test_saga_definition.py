import inspect
from pathlib import Path
from typing import get_type_hints

import pytest
from contracts.base import Command
from contracts.payments import v1
from contracts.payments.v1 import ChargePayment
from contracts.payments.v2 import AuthorizePayment
from orders.service_layer import saga
from orders.service_layer.saga import (
    COMMANDS_SENT,
    DEFINITIONS,
    ORDER,
    ORDER_V1,
    ORDER_V2,
    UNDO_APPROVED,
    UNDO_COMPLETED,
    authorize_payment,
    cancel_shipment,
    charge_payment,
    create_shipment,
    payment_authorized,
    payment_charged,
    payment_declined,
    release_stock,
    reserve_stock,
)

DATA = {"order_id": "o-1", "customer_id": "alice", "amount": "29300", "currency": "KRW",
        "payment_method_id": "pm_1", "card_last4": "4242",
        "lines": [{"sku": "MUG", "quantity": 2}],
        "address": {"name": "Kim", "line1": "1 Main", "line2": None, "city": "Seoul",
                    "postal_code": "04524", "country": "KR", "phone": None}}


def test_the_saga_is_three_steps_the_charge_forwarding_the_shipment() -> None:
    d = ORDER.describe()
    assert d["name"] == "order.v3"
    assert [(s["name"], s["command"], s["compensation"]) for s in d["steps"]] == [
        ("reserve_stock", "ReserveStock.v1", "ReleaseStock.v1"),
        ("charge_payment", "ChargePayment.v1", "VoidPayment.v1"),
        ("create_shipment", "CreateShipment.v1", "CancelShipment.v1")]
    assert [(s["success"], s["failure"]) for s in d["steps"]] == [
        (["StockReserved.v1"], ["StockReservationFailed.v1"]),
        (["PaymentCaptured.v1"], ["PaymentDeclined.v1"]),
        (["ShipmentCreated.v1"], ["ShipmentCreationFailed.v1"])]
    assert all((s["deadline_s"], s["max_resends"]) == (10.0, 2) for s in d["steps"])
    # Payments sends CreateShipment when the charge is captured (ADR 0053).
    assert [s["forward"] for s in d["steps"]] == [False, True, False]


def test_the_definition_sagas_started_before_adr_0053_run_on_is_kept_under_its_name() -> None:
    d = ORDER_V2.describe()
    assert d["name"] == "order.v2"
    assert [(s["command"], s["success"], s["forward"]) for s in d["steps"]] == [
        ("ReserveStock.v1", ["StockReserved.v1"], False),
        ("ChargePayment.v1", ["PaymentCaptured.v1"], False),
        ("CreateShipment.v1", ["ShipmentCreated.v1"], False)]
    assert ORDER_V2.secret_keys == ORDER.secret_keys and ORDER_V2.on_end is ORDER.on_end


def test_the_definition_sagas_started_before_adr_0051_run_on_is_kept_under_its_name() -> None:
    d = ORDER_V1.describe()
    assert d["name"] == "order"
    assert [(s["name"], s["command"], s["compensation"]) for s in d["steps"]] == [
        ("reserve_stock", "ReserveStock.v1", "ReleaseStock.v1"),
        ("authorize_payment", "AuthorizePayment.v2", "VoidPayment.v1"),
        ("create_shipment", "CreateShipment.v1", "CancelShipment.v1"),
        ("capture_payment", "CapturePayment.v1", "RefundPayment.v1")]
    assert [s["failure"] for s in d["steps"]] == [
        ["StockReservationFailed.v1"], ["PaymentDeclined.v1"], ["ShipmentCreationFailed.v1"],
        ["PaymentFailed.v1"]]
    assert [x.name for x in DEFINITIONS] == ["order.v3", "order.v2", "order"]
    assert ORDER_V1.secret_keys == ORDER.secret_keys and ORDER_V1.on_end is ORDER.on_end


def test_the_readme_shows_the_current_diagram() -> None:
    mermaid = ORDER.to_mermaid()
    assert mermaid.startswith("flowchart TD")
    assert "undo charge_payment: VoidPayment.v1" in mermaid
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert mermaid in readme


def test_ids_are_derived_from_the_order_id_so_resends_are_the_same_command() -> None:
    assert reserve_stock(DATA).reservation_id == "o-1"
    assert release_stock({**DATA, "failure": {"reason": "card_declined"}}).reason == (
        "card_declined")
    auth = authorize_payment(DATA)
    assert isinstance(auth, AuthorizePayment)
    assert (auth.payment_id, auth.amount, auth.customer_id, auth.payment_method_id,
            auth.card_last4) == ("pay-o-1", "29300", "alice", "pm_1", "4242")
    assert "card_number" not in auth.to_payload()
    assert authorize_payment(DATA) == auth
    charge = charge_payment(DATA)
    assert isinstance(charge, ChargePayment)
    assert (charge.payment_id, charge.amount, charge.customer_id, charge.payment_method_id,
            charge.card_last4) == ("pay-o-1", "29300", "alice", "pm_1", "4242")
    assert charge_payment(DATA) == charge
    ship = create_shipment(DATA)
    assert (ship.shipment_id, ship.address.city, ship.lines[0].sku) == ("shp-o-1", "Seoul",
                                                                        "MUG")
    assert cancel_shipment(DATA).shipment_id == "shp-o-1"


def test_a_saga_an_older_release_started_resends_its_card_as_v1() -> None:
    """Its data holds card_number (no payment method): payments still handles v1."""
    old = {k: v for k, v in DATA.items() if k not in ("payment_method_id", "card_last4")}
    auth = authorize_payment({**old, "card_number": "4242424242424242"})
    assert isinstance(auth, v1.AuthorizePayment)
    assert (auth.payment_id, auth.card_number) == ("pay-o-1", "4242424242424242")


@pytest.mark.parametrize("handler", [payment_authorized, payment_charged, payment_declined])
def test_the_payment_method_leaves_the_data_once_payments_answered(handler) -> None:
    for data in (dict(DATA), {**DATA, "card_number": "4242424242424242"}):
        updates = handler(data, {"card_last4": "4242", "reason": "card_declined"})
        assert "payment_method_id" not in data and "card_number" not in data
        assert not {"payment_method_id", "card_number"} & set(updates or {})


def test_the_documented_diagram_is_the_definitions_own() -> None:
    """docs/saga.md shows every step, reply and compensation: it must be this definition's
    diagram, not an older one (regenerate it with ``ORDER.to_mermaid()``)."""
    doc = Path(__file__).resolve().parents[4] / "docs" / "saga.md"
    assert ORDER.to_mermaid().strip() in doc.read_text()


def test_every_command_orders_builds_is_one_it_declares_it_sends() -> None:
    """The broker lets orders publish COMMANDS_SENT and no other command (ADR 0056): a
    builder the sagas or the cancellation use, whatever it returns for real data, is among
    them, and so is every command builder the saga module holds."""
    builders = [*(b for d in DEFINITIONS for b in d.builders()), *UNDO_COMPLETED,
                *UNDO_APPROVED]
    for builder in builders:
        command = builder({**DATA, "card_number": "4242424242424242"})
        assert command.subject() in COMMANDS_SENT, builder
    in_module = [f for f in vars(saga).values() if inspect.isfunction(f)
                 and f.__module__ == saga.__name__
                 and isinstance(get_type_hints(f).get("return"), type)
                 and issubclass(get_type_hints(f)["return"], Command)]
    assert in_module and set(in_module) <= set(builders)
    assert "inventory.commands.commit_reservation" not in COMMANDS_SENT
    assert "shipping.commands.release_shipment" not in COMMANDS_SENT
