"""Contracts into Changes: what each event tells, and what makes a message poison."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from chassis.messaging.envelope import PoisonMessage
from contracts.orders.v1 import OrderApproved, OrderCancelled, OrderLine, OrderPlaced, OrderRejected
from contracts.payments.v1 import (
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    PaymentRefunded,
    PaymentVoided,
)
from contracts.shipping.v1 import (
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentCreationFailed,
    ShipmentStatusChanged,
)
from order_history.service_layer import changes

AT = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def test_order_events() -> None:
    placed = changes.order_placed(OrderPlaced(
        order_id="o1", customer_id="alice", total="12.50", currency="EUR",
        lines=[OrderLine(product_id="p", sku="S", name="N", quantity=1, unit_price="12.50")]),
        AT)
    assert (placed.customer_id, placed.status, placed.total, placed.currency, placed.placed,
            placed.occurred_at) == ("alice", "PENDING", Decimal("12.50"), "EUR", True, AT)
    assert placed.lines == [{"product_id": "p", "sku": "S", "name": "N", "quantity": 1,
                             "unit_price": "12.50"}]
    approved = changes.order_approved(OrderApproved(order_id="o1", customer_id="alice",
                                                    total="12.50", currency="EUR"), AT)
    assert (approved.status, approved.placed, approved.lines) == ("APPROVED", False, None)
    # Published before the event carried the capture and the tracking number: approval still
    # means the whole total was captured and the shipment created.
    assert (approved.payment_status, approved.amount_captured, approved.shipment_status,
            approved.tracking_number) == ("CAPTURED", Decimal("12.50"), "CREATED", None)
    told = changes.order_approved(OrderApproved(
        order_id="o1", customer_id="alice", total="12.50", currency="EUR",
        amount_captured="12.50", tracking_number="MS9"), AT)
    assert (told.amount_captured, told.tracking_number) == (Decimal("12.50"), "MS9")
    rejected = changes.order_rejected(OrderRejected(order_id="o1", customer_id="alice",
                                                    reason="out_of_stock"), AT)
    assert (rejected.status, rejected.reason) == ("REJECTED", "out_of_stock")
    cancelled = changes.order_cancelled(OrderCancelled(order_id="o1", customer_id="alice"), AT)
    assert (cancelled.status, cancelled.reason) == ("CANCELLED", None)


def test_payment_events_carry_no_customer() -> None:
    made = [
        changes.payment_authorized(PaymentAuthorized(payment_id="p", order_id="o1", amount="5",
                                                     currency="KRW", card_last4="4242"), AT),
        changes.payment_declined(PaymentDeclined(payment_id="p", order_id="o1",
                                                 reason="card_declined"), AT),
        changes.payment_captured(PaymentCaptured(payment_id="p", order_id="o1", amount="5",
                                                 currency="KRW"), AT),
        changes.payment_voided(PaymentVoided(payment_id="p", order_id="o1"), AT),
        changes.payment_refunded(PaymentRefunded(payment_id="p", order_id="o1", amount="5",
                                                 currency="KRW"), AT),
        changes.payment_failed(PaymentFailed(payment_id="p", order_id="o1", operation="capture",
                                             reason="voided"), AT),
    ]
    assert [c.payment_status for c in made] == ["AUTHORIZED", "DECLINED", "CAPTURED", "VOIDED",
                                                "REFUNDED", None]
    assert all(c.customer_id is None and c.order_id == "o1" for c in made)
    assert (made[2].amount_captured, made[4].amount_refunded) == (Decimal(5), Decimal(5))


def test_shipping_events() -> None:
    created = changes.shipment_created(ShipmentCreated(shipment_id="s", order_id="o1",
                                                       customer_id="alice",
                                                       tracking_number="MS1"), AT)
    assert (created.customer_id, created.shipment_status, created.tracking_number) == (
        "alice", "CREATED", "MS1")
    moved = changes.shipment_status_changed(ShipmentStatusChanged(
        shipment_id="s", order_id="o1", customer_id="alice", status="IN_TRANSIT",
        tracking_number="MS1"), AT)
    assert moved.shipment_status == "IN_TRANSIT"
    assert changes.shipment_creation_failed(ShipmentCreationFailed(
        shipment_id="s", order_id="o1", reason="invalid_address"), AT).shipment_status == "FAILED"
    assert changes.shipment_cancelled(ShipmentCancelled(shipment_id="s", order_id="o1"),
                                      AT).shipment_status == "CANCELLED"


@pytest.mark.parametrize("make", [
    lambda: changes.order_placed(OrderPlaced(order_id="", customer_id="a", lines=[], total="1",
                                             currency="KRW"), AT),
    lambda: changes.order_placed(OrderPlaced(order_id="o", customer_id="a" * 201, lines=[],
                                             total="1", currency="KRW"), AT),
    lambda: changes.order_placed(OrderPlaced(order_id="o", customer_id="a", lines=[],
                                             total="-1", currency="KRW"), AT),
    lambda: changes.order_placed(OrderPlaced(order_id="o", customer_id="a", lines=[],
                                             total="NaN", currency="KRW"), AT),
    lambda: changes.order_approved(OrderApproved(order_id="o", customer_id="a", total="1",
                                                 currency="won"), AT),
    lambda: changes.payment_captured(PaymentCaptured(payment_id="p", order_id="o",
                                                     amount="ten", currency="KRW"), AT),
    lambda: changes.order_approved(OrderApproved(order_id="o", customer_id="a", total="1",
                                                 currency="KRW", amount_captured="-1"), AT),
    lambda: changes.order_approved(OrderApproved(order_id="o", customer_id="a", total="1",
                                                 currency="KRW", tracking_number=""), AT),
    lambda: changes.shipment_status_changed(ShipmentStatusChanged(
        shipment_id="s", order_id="o", customer_id="a", status="LOST",
        tracking_number="MS1"), AT),
    lambda: changes.shipment_created(ShipmentCreated(shipment_id="s", order_id="o",
                                                     customer_id="a",
                                                     tracking_number="M" * 65), AT),
])
def test_values_the_view_cannot_hold_are_poison(make: object) -> None:
    with pytest.raises(PoisonMessage):
        make()  # type: ignore[operator]
