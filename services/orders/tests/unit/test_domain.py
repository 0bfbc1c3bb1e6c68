from datetime import UTC, datetime
from decimal import Decimal

import pytest
from orders.domain.commands import OrderItem, PaymentChoice, PlaceOrder
from orders.domain.model import (
    APPROVED,
    CANCELLED,
    PENDING,
    REJECTED,
    Order,
    OrderError,
    OrderLine,
    card_fingerprint,
    check_items,
    format_amount,
    rejection_reason,
    request_fingerprint,
    total_of,
)

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def line(pid: str = "p1", qty: int = 1, price: str = "12900") -> OrderLine:
    return OrderLine(pid, f"SKU-{pid}", f"Product {pid}", qty, Decimal(price))


def order(**kw: object) -> Order:
    return Order.place("o1", "alice", [line("p1", 2, "12900"), line("p2", 1, "3500")],
                       shipping_address_id="a1", now=NOW, **kw)  # type: ignore[arg-type]


def body(items: tuple[tuple[str, int], ...] = (("p1", 2), ("p2", 1)), address: str = "a1", *,
         card: str | None = "4242424242424242", method: str | None = None) -> PlaceOrder:
    return PlaceOrder(tuple(OrderItem(p, q) for p, q in items), address,
                      PaymentChoice(payment_method_id=method,
                                    card_number=None if method else card))


def test_total_is_the_sum_of_price_times_quantity_in_decimal() -> None:
    assert total_of([line("p1", 3, "0.1"), line("p2", 1, "0.2")]) == Decimal("0.5")
    o = order()
    assert o.total == Decimal("29300") and o.status == PENDING and o.currency == "KRW"
    assert format_amount(Decimal("29300.00")) == "29300"


def test_an_order_needs_lines() -> None:
    with pytest.raises(OrderError):
        Order.place("o1", "alice", [], shipping_address_id="a1")


@pytest.mark.parametrize(("items", "reason"), [
    ([], "invalid_items"),
    ([("p1", 1)] * 2, "duplicate_product"),
    ([("p1", 0)], "invalid_quantity"),
    ([("p1", 101)], "invalid_quantity"),
    ([(f"p{i}", 1) for i in range(51)], "invalid_items"),
])
def test_items_rules(items: list, reason: str) -> None:
    with pytest.raises(OrderError) as caught:
        check_items(items)
    assert caught.value.reason == reason


def test_fingerprint_ignores_item_order_but_not_content() -> None:
    same = body((("p2", 1), ("p1", 2)))
    assert request_fingerprint(body()) == request_fingerprint(same)
    assert request_fingerprint(body()) != request_fingerprint(body((("p1", 3),)))
    assert request_fingerprint(body()) != request_fingerprint(body(address="a2"))
    assert request_fingerprint(body()) != request_fingerprint(body(card="4000000000000002"))


def test_fingerprint_does_not_contain_the_card_number() -> None:
    assert "4242424242424242" not in request_fingerprint(body())
    assert len(request_fingerprint(body())) == 64
    assert "4242424242424242" not in repr(body())


KEY = b"a secret from the vault"


def test_a_keyed_fingerprint_tells_cards_with_the_same_last_four_apart() -> None:
    # 4000000000024242 and 4242424242424242: same length and last four digits.
    other = body(card="4000000000024242")
    assert request_fingerprint(body(), KEY) != request_fingerprint(other, KEY)
    assert request_fingerprint(body(), KEY) == request_fingerprint(body(), KEY)
    assert request_fingerprint(body(), KEY) != request_fingerprint(body(), b"another key")
    # Unkeyed (development without the secret): only length and last four digits count.
    assert request_fingerprint(body()) == request_fingerprint(other)
    assert card_fingerprint("4242424242424242", None) == "len-last4:16:4242"
    assert "4242424242424242" not in card_fingerprint("4242424242424242", KEY)


def test_a_payment_method_order_is_fingerprinted_by_the_method() -> None:
    pm = body(method="pm_1")
    assert request_fingerprint(pm) == request_fingerprint(pm, KEY)
    assert request_fingerprint(pm) != request_fingerprint(body(method="pm_2"))
    assert request_fingerprint(pm) != request_fingerprint(body())


def test_fingerprints_are_the_ones_stored_before_orders_took_a_command() -> None:
    # Computed by the dict-taking request_fingerprint (before ADR 0025) from the order
    # request's JSON: a key stored then, retried after the upgrade, still matches.
    unsorted = (("p2", 1), ("p1", 2))
    assert request_fingerprint(body(unsorted, method="pm_1"), KEY) == (
        "2ae0b1f6f09060bbb2f0983cd600e6d9f380191d39ece4d218884e12df39ed87")
    assert request_fingerprint(body(unsorted)) == (
        "ba14243db2d7657a18a3402339619f257e38ed9768eb4cf804f496cfe1a4e785")
    assert request_fingerprint(body(unsorted), KEY) == (
        "7719ce705611d2ef835a414e6ec054d7356e2f304c6d204cb02cad786a7a0b43")


def test_a_payment_is_one_of_the_two() -> None:
    for neither_or_both in ({}, {"payment_method_id": "pm_1",
                                 "card_number": "4242424242424242"}):
        with pytest.raises(ValueError, match="either"):
            PaymentChoice(**neither_or_both)


def test_pending_moves_once_to_a_terminal_status() -> None:
    o = order()
    o.approve(NOW)
    assert o.status == APPROVED and o.is_terminal
    with pytest.raises(OrderError):
        o.reject("card_declined", NOW)
    r = order()
    r.reject("card_declined", NOW)
    assert (r.status, r.reason) == (REJECTED, "card_declined")


def test_cancel_is_requested_while_pending_and_refused_after() -> None:
    o = order()
    assert o.request_cancel(NOW) is True
    assert o.request_cancel(NOW) is False  # a repeat changes nothing
    o.cancel(NOW)
    assert (o.status, o.reason) == (CANCELLED, "cancelled_by_customer")
    for final in (REJECTED, CANCELLED):
        done = order()
        done.status = final
        with pytest.raises(OrderError) as caught:
            done.request_cancel(NOW)
        assert caught.value.reason == "not_cancellable"


def test_an_approved_order_is_cancelled_once_shipping_agrees_or_stays_approved() -> None:
    agreed = order()
    agreed.approve(NOW)
    assert agreed.request_cancel(NOW) is True and agreed.status == APPROVED
    agreed.cancel(NOW)
    assert (agreed.status, agreed.reason) == (CANCELLED, "cancelled_by_customer")
    refused = order()
    refused.approve(NOW)
    assert refused.refuse_cancel("already_dispatched", NOW) is False  # none was asked
    refused.request_cancel(NOW)
    assert refused.refuse_cancel("already_dispatched", NOW) is True
    assert (refused.status, refused.reason, refused.cancel_requested) == (
        APPROVED, "already_dispatched", False)
    with pytest.raises(OrderError):
        refused.request_cancel(NOW)  # the parcel has left: asking again cannot help
    with pytest.raises(OrderError):
        refused.cancel(NOW)


def test_rejection_reason_comes_from_the_saga_failure() -> None:
    assert rejection_reason({"step": "authorize_payment", "reason": "card_declined"}) == (
        "card_declined")
    assert rejection_reason({"step": "reserve_stock", "reason": "timed_out"}) == (
        "reserve_stock_timed_out")
    assert rejection_reason(None) == "unknown"
