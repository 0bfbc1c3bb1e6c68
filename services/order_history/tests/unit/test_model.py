"""The merge rules of the order view as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from order_history.domain.model import (
    ORDER_RANK,
    PAYMENT_RANK,
    SHIPMENT_RANK,
    Change,
    OrderView,
    fold,
    merge,
    ranked,
)

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def change(minutes: int = 0, **fields: object) -> Change:
    return Change(order_id="o1", occurred_at=at(minutes), **fields)  # type: ignore[arg-type]


LINES = [{"product_id": "p1", "sku": "MUG", "name": "Mug", "quantity": 2,
          "unit_price": "15000"}]
PLACED = change(0, customer_id="alice", status="PENDING", total=Decimal("30000"),
                currency="KRW", lines=LINES, placed=True)


@pytest.mark.parametrize(("ranks", "order"), [
    (ORDER_RANK, ["PENDING", "APPROVED", "REJECTED", "CANCELLED"]),
    (PAYMENT_RANK, ["AUTHORIZED", "CAPTURED", "REFUNDED", "VOIDED", "DECLINED"]),
    (SHIPMENT_RANK, ["CREATED", "DISPATCHED", "IN_TRANSIT", "DELIVERED", "FAILED",
                     "CANCELLED"]),
])
def test_each_status_only_moves_up_its_rank(ranks: dict[str, int], order: list[str]) -> None:
    assert sorted(ranks, key=ranks.__getitem__) == order
    for i, lower in enumerate(order):
        for higher in order[i + 1:]:
            assert ranked(lower, higher, ranks) == higher
            assert ranked(higher, lower, ranks) == higher
    assert ranked(None, order[0], ranks) == order[0]
    assert ranked(order[0], None, ranks) == order[0]


def test_a_late_older_event_does_not_set_a_status_back() -> None:
    view = fold("o1", [PLACED, change(5, status="APPROVED"), change(6, payment_status="CAPTURED"),
                       change(7, shipment_status="DELIVERED")])
    late = merge(view, change(1, status="PENDING", payment_status="AUTHORIZED",
                              shipment_status="CREATED"))
    assert (late.status, late.payment_status, late.shipment_status) == (
        "APPROVED", "CAPTURED", "DELIVERED")
    assert late.last_event_at == at(7)


def test_terminal_statuses_are_final() -> None:
    view = fold("o1", [change(1, payment_status="DECLINED"), change(2, shipment_status="CANCELLED"),
                       change(3, status="REJECTED", reason="card_declined")])
    after = merge(view, change(9, status="APPROVED", payment_status="CAPTURED",
                               shipment_status="DELIVERED"))
    assert (after.status, after.reason, after.payment_status, after.shipment_status) == (
        "REJECTED", "card_declined", "DECLINED", "CANCELLED")


def test_the_reason_belongs_to_the_winning_status() -> None:
    rejected = fold("o1", [PLACED, change(2, status="REJECTED", reason="out_of_stock")])
    assert rejected.reason == "out_of_stock"
    cancelled = merge(rejected, change(3, status="CANCELLED", reason=None))
    assert (cancelled.status, cancelled.reason) == ("CANCELLED", None)
    # A repeat of the same status with another reason: the smallest, in any order.
    a = merge(merge(rejected, change(4, status="REJECTED", reason="a_first")), PLACED)
    assert a.reason == "a_first"


def test_amounts_keep_their_maximum_and_are_not_added_up() -> None:
    captured = change(3, payment_status="CAPTURED", amount_captured=Decimal("30000"),
                      currency="KRW")
    view = fold("o1", [captured, captured, change(4, payment_status="REFUNDED",
                                                  amount_refunded=Decimal("30000"))])
    assert (view.amount_captured, view.amount_refunded) == (Decimal("30000"), Decimal("30000"))
    small = change(5, amount_captured=Decimal("100"))
    assert fold("o1", [small, captured]).amount_captured == Decimal("30000")
    assert fold("o1", [captured, small]).amount_captured == Decimal("30000")


def test_what_never_changes_fills_a_gap_once() -> None:
    view = fold("o1", [change(1, payment_status="CAPTURED", amount_captured=Decimal(5)),
                       change(2, customer_id="alice", tracking_number="MS1",
                              shipment_status="CREATED")])
    assert (view.customer_id, view.status, view.total, view.lines, view.placed_at) == (
        "alice", None, None, None, None)
    assert view.visible_to_customers
    placed = merge(view, PLACED)
    assert (placed.total, placed.currency, placed.lines, placed.placed_at) == (
        Decimal("30000"), "KRW", LINES, at(0))
    assert merge(placed, change(9, tracking_number="MS2")).tracking_number == "MS1"


def test_a_row_without_a_customer_is_not_visible_to_customers() -> None:
    assert not fold("o1", [change(1, payment_status="AUTHORIZED")]).visible_to_customers


def test_a_change_for_another_order_is_refused() -> None:
    with pytest.raises(ValueError):
        merge(OrderView("o2"), PLACED)


# Every event one order's saga (and its compensations, repeats and re-publications) can
# produce; an order's events are any subset of these, arriving in any order.
POOL = [
    PLACED,
    change(30, customer_id="alice", status="PENDING", total=Decimal("30000"), currency="KRW",
           lines=LINES, placed=True),  # OrderPlaced published again, later
    change(1, payment_status="AUTHORIZED", currency="KRW"),
    change(2, payment_status="DECLINED"),
    change(3, customer_id="alice", shipment_status="CREATED", tracking_number="MS1"),
    change(4, payment_status="CAPTURED", amount_captured=Decimal("30000"), currency="KRW"),
    change(5, customer_id="alice", status="APPROVED", total=Decimal("30000"), currency="KRW"),
    change(6, customer_id="alice", shipment_status="DISPATCHED", tracking_number="MS1"),
    change(7, customer_id="alice", shipment_status="DELIVERED", tracking_number="MS1"),
    change(8, shipment_status="FAILED"),
    change(9, shipment_status="CANCELLED"),
    change(10, payment_status="VOIDED"),
    change(11, payment_status="REFUNDED", amount_refunded=Decimal("30000"), currency="KRW"),
    change(12, customer_id="alice", status="REJECTED", reason="payment_declined"),
    change(13, customer_id="alice", status="REJECTED", reason="out_of_stock"),
    change(14, customer_id="alice", status="CANCELLED", reason="customer"),
    change(15, customer_id="alice", status="CANCELLED", reason=None),
    change(16),  # PaymentFailed: nothing changed but the time
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(POOL), min_size=1, max_size=12).flatmap(
    lambda events: st.tuples(st.just(events), st.permutations(events))))
def test_any_permutation_of_the_same_events_gives_the_same_row(
        events_and_shuffled: tuple[list[Change], list[Change]]) -> None:
    events, shuffled = events_and_shuffled
    assert fold("o1", shuffled) == fold("o1", events)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(POOL), min_size=1, max_size=12))
def test_merging_an_event_again_changes_nothing(events: list[Change]) -> None:
    view = fold("o1", events)
    for event in events:
        assert merge(view, event) == view
