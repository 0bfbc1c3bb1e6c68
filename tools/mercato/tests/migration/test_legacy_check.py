"""The legacy shop's invariants (`mercato legacy check`), fed rows: each planted break fires
its rule, and the shapes a healthy shop really has (seeded history, a checkout in flight, a
cancelled order) pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mercato.migration.legacy_check import evaluate, settle

KEY = "legacy-checkout:7:abc"


def shop(**change: Any) -> dict[str, Any]:
    """One settled PAID order of 30.00 (two lines), paid through charge ch_1, captured."""
    rows: dict[str, Any] = {
        "orders": [{"id": 1, "status": "PAID", "total": "30.00", "currency": "KRW",
                    "settled": True}],
        "lines": [{"order_id": 1, "n": 2, "sum": "30.00"}],
        "payments": [{"order_id": 1, "provider_charge_id": "ch_1", "status": "CAPTURED",
                      "amount": "30.00", "currency": "KRW"}],
        "shipments": [{"order_id": 1, "status": "READY"}],
        "charges": [{"id": "ch_1", "idempotency_key": KEY, "status": "captured",
                     "amount": "30.00", "currency": "KRW", "settled": True}],
    }
    rows.update(change)
    return rows


def rules(**change: Any) -> set[str]:
    return {v.invariant for v in evaluate(**shop(**change))}


def test_a_healthy_order_passes() -> None:
    assert evaluate(**shop()) == []


def test_totals_lines_and_payments() -> None:
    assert rules(lines=[]) == {"every order has lines"}
    assert rules(lines=[{"order_id": 1, "n": 2, "sum": "31.00"}]) == {
        "an order's total is the sum of its lines"}
    assert "every order has its payment" in rules(payments=[])
    wrong = [{**shop()["payments"][0], "amount": "29.00"}]
    assert "every order has its payment" in rules(payments=wrong)


def test_shipments_follow_orders_and_cancelled_orders_are_refunded() -> None:
    assert rules(shipments=[]) == {"every order that is not cancelled has a shipment"}
    assert rules(shipments=[{"order_id": 1, "status": "DELIVERED"}]) == {
        "a shipment follows its order"}
    cancelled = [{**shop()["orders"][0], "status": "CANCELLED"}]
    assert rules(orders=cancelled, shipments=[]) == {"a cancelled order is refunded"}
    refunded = [{**shop()["payments"][0], "status": "REFUNDED"}]
    charge = [{**shop()["charges"][0], "status": "refunded"}]
    assert rules(orders=cancelled, shipments=[], payments=refunded, charges=charge) == set()


def test_money_held_without_an_order_and_a_second_live_charge() -> None:
    stray = {"id": "ch_2", "idempotency_key": "legacy-checkout:7:other",
             "status": "authorized", "amount": "12.00", "currency": "KRW", "settled": True}
    found = evaluate(**shop(charges=[*shop()["charges"], stray]))
    assert [v.subject for v in found] == ["ch_2"]
    assert "money held, no order" in found[0].detail
    # The services' charges (other keys) and voided authorizations are not the shop's.
    other = {**stray, "idempotency_key": "payment-123"}
    voided = {**stray, "status": "voided"}
    assert evaluate(**shop(charges=[*shop()["charges"], other, voided])) == []
    # An authorization younger than the grace may be a checkout about to commit.
    assert evaluate(**shop(charges=[*shop()["charges"], {**stray, "settled": False}])) == []


def test_the_provider_and_the_payment_must_agree() -> None:
    assert rules(charges=[{**shop()["charges"][0], "amount": "31.00"}]) == {
        "the provider's legacy charges match the stored payments"}
    # Captured at the provider, the shop still says authorized: the capture's update was lost.
    authorized = [{**shop()["payments"][0], "status": "AUTHORIZED"}]
    assert rules(payments=authorized) == {
        "the provider's legacy charges match the stored payments"}
    assert rules(charges=[]) == {"the provider's legacy charges match the stored payments"}
    # The seeded year of trading predates the provider: its charges are not looked up.
    seeded = [{**shop()["payments"][0], "provider_charge_id": "seed-charge-1"}]
    assert rules(payments=seeded, charges=[]) == set()
    # The provider unreadable: the shop's own rules still run.
    assert rules(charges=None, lines=[]) == {"every order has lines"}


def test_an_order_in_flight_is_not_judged_yet() -> None:
    young = [{**shop()["orders"][0], "settled": False}]
    authorizing = [{**shop()["charges"][0], "status": "authorized", "settled": False}]
    assert rules(orders=young, lines=[], payments=[], shipments=[],
                 charges=authorizing) == set()


def test_settle_marks_charges_by_their_last_change() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    charges = [{"id": "old", "updated_at": (now - timedelta(seconds=60)).isoformat()},
               {"id": "new", "updated_at": (now - timedelta(seconds=5)).isoformat()},
               {"id": "odd", "updated_at": "yesterday"}]
    marked = {c["id"]: c["settled"] for c in settle(charges, now, 30)}
    assert marked == {"old": True, "new": False, "odd": True}
