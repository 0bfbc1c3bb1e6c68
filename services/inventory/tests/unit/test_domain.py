from datetime import UTC, datetime, timedelta

import pytest
from inventory.domain.model import (
    COMMITTED,
    EXPIRED,
    FAILED,
    INSUFFICIENT_STOCK,
    RELEASED,
    RELEASED_BEFORE_RESERVE,
    RESERVED,
    RESTOCKED,
    BelowReserved,
    InventoryError,
    Line,
    Reservation,
    Stock,
    fell_below,
    merge_lines,
)

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=15)


def shelf(**units: int) -> dict[str, Stock]:
    return {sku: Stock(sku, on_hand) for sku, on_hand in units.items()}


def levels(stock: dict[str, Stock]) -> dict[str, tuple[int, int]]:
    return {sku: (s.on_hand, s.reserved) for sku, s in stock.items()}


def test_stock_invariants_are_enforced() -> None:
    with pytest.raises(InventoryError):
        Stock("A", on_hand=1, reserved=2)
    with pytest.raises(InventoryError):
        Stock("A", on_hand=-1)
    s = Stock("A", 3)
    with pytest.raises(InventoryError):
        s.reserve(4)
    s.reserve(3)
    assert (s.available, s.reserved) == (0, 3)
    with pytest.raises(InventoryError):
        s.release(4)
    s.ship(2)
    assert (s.on_hand, s.reserved, s.available) == (1, 1, 0)


def test_on_hand_cannot_drop_below_reserved() -> None:
    s = Stock("A", 10, reserved=4)
    with pytest.raises(BelowReserved):
        s.set_on_hand(3)
    with pytest.raises(InventoryError):
        s.set_on_hand(-1)
    s.set_on_hand(4)
    assert (s.on_hand, s.available) == (4, 0)


def test_lines_are_merged_per_sku_and_sorted() -> None:
    assert merge_lines([("B", 1), ("A", 2), ("B", 3)]) == (Line("A", 2), Line("B", 4))
    with pytest.raises(InventoryError):
        merge_lines([])
    with pytest.raises(InventoryError):
        merge_lines([("A", 0)])


def test_reserve_takes_every_line_when_all_fit() -> None:
    stock = shelf(A=5, B=2)
    r = Reservation.attempt("r1", "o1", [("A", 3), ("B", 2)], stock, now=NOW, ttl=TTL)
    assert r.status == RESERVED and r.expires_at == NOW + TTL
    assert levels(stock) == {"A": (5, 3), "B": (2, 2)}


def test_reserve_takes_nothing_when_one_line_is_short() -> None:
    stock = shelf(A=5, B=1)
    r = Reservation.attempt("r1", "o1", [("A", 3), ("B", 2)], stock, now=NOW, ttl=TTL)
    assert (r.status, r.reason, r.short_skus) == (FAILED, INSUFFICIENT_STOCK, ("B",))
    assert r.expires_at is None
    assert levels(stock) == {"A": (5, 0), "B": (1, 0)}  # A was not touched either


def test_unknown_sku_counts_as_short() -> None:
    stock = shelf(A=5)
    r = Reservation.attempt("r1", None, [("A", 1), ("GHOST", 1)], stock, now=NOW, ttl=TTL)
    assert r.status == FAILED and r.short_skus == ("GHOST",)
    assert levels(stock) == {"A": (5, 0)}


def test_repeated_sku_lines_must_fit_together() -> None:
    stock = shelf(A=3)
    r = Reservation.attempt("r1", None, [("A", 2), ("A", 2)], stock, now=NOW, ttl=TTL)
    assert r.status == FAILED and r.short_skus == ("A",)


def test_release_gives_units_back_once() -> None:
    stock = shelf(A=5)
    r = Reservation.attempt("r1", None, [("A", 2)], stock, now=NOW, ttl=TTL)
    assert r.release(stock, reason="payment_declined", now=NOW) is True
    assert (r.status, r.reason) == (RELEASED, "payment_declined")
    assert levels(stock) == {"A": (5, 0)}
    assert r.release(stock, reason="again", now=NOW) is False
    assert r.commit(stock, now=NOW) is False  # released is terminal
    assert levels(stock) == {"A": (5, 0)} and r.reason == "payment_declined"


def test_commit_ships_the_units_once() -> None:
    stock = shelf(A=5)
    r = Reservation.attempt("r1", None, [("A", 2)], stock, now=NOW, ttl=TTL)
    assert r.commit(stock, now=NOW) is True
    assert r.status == COMMITTED and levels(stock) == {"A": (3, 0)}
    assert r.commit(stock, now=NOW) is False
    assert r.release(stock, reason="too late", now=NOW) is False  # cannot un-ship
    assert levels(stock) == {"A": (3, 0)}


def test_restock_puts_committed_units_back_on_hand_once() -> None:
    stock = shelf(A=5)
    r = Reservation.attempt("r1", None, [("A", 2)], stock, now=NOW, ttl=TTL)
    assert r.restock(stock, reason="cancelled", now=NOW) is False  # nothing shipped yet
    r.commit(stock, now=NOW)
    assert r.restock(stock, reason="cancelled_by_customer", now=NOW) is True
    assert (r.status, r.reason) == (RESTOCKED, "cancelled_by_customer")
    assert levels(stock) == {"A": (5, 0)}
    assert r.restock(stock, reason="again", now=NOW) is False
    assert r.commit(stock, now=NOW) is False and r.release(stock, reason="x", now=NOW) is False
    assert levels(stock) == {"A": (5, 0)}


def test_failed_reservation_holds_nothing_to_release_or_commit() -> None:
    stock = shelf(A=1)
    r = Reservation.attempt("r1", None, [("A", 2)], stock, now=NOW, ttl=TTL)
    assert r.release(stock, reason="x", now=NOW) is False
    assert r.commit(stock, now=NOW) is False
    assert r.status == FAILED and levels(stock) == {"A": (1, 0)}


def test_tombstone_is_released_and_holds_nothing() -> None:
    t = Reservation.tombstone("r9", reason=None, now=NOW)
    assert (t.status, t.lines, t.reason) == (RELEASED, (), RELEASED_BEFORE_RESERVE)
    assert t.commit({}, now=NOW) is False and t.release({}, reason="x", now=NOW) is False


def test_expiry_applies_only_to_live_reservations_past_their_deadline() -> None:
    stock = shelf(A=5)
    r = Reservation.attempt("r1", None, [("A", 1)], stock, now=NOW, ttl=TTL)
    assert not r.is_expired(NOW + TTL - timedelta(seconds=1))
    assert r.is_expired(NOW + TTL)
    r.release(stock, reason=EXPIRED, now=NOW + TTL)
    assert not r.is_expired(NOW + 2 * TTL)


def test_stock_low_fires_on_crossing_the_threshold_only() -> None:
    a, b, c = Stock("A", 10, reserved=6), Stock("B", 10, reserved=8), Stock("C", 10, 1)
    before = {"A": 5, "B": 3, "C": 9}
    # A: 5 -> 4 crosses; B: already low (3 -> 2) stays quiet; C: 9 -> 9 is not low.
    assert fell_below(before, [a, b, c], threshold=5) == [a]
    assert fell_below({}, [a], threshold=5) == []  # just created: nothing dropped
