"""The cart's rules, on plain objects."""

from __future__ import annotations

from decimal import Decimal

import pytest
from cart.domain.commands import CheckOutCart, PaymentChoice
from cart.domain.model import (
    MAX_LINES,
    Cart,
    CartError,
    CartLine,
    check_quantity,
    format_amount,
    order_idempotency_key,
    parse_price,
    request_fingerprint,
)


def line(product_id: str, quantity: int = 1, price: str = "1000",
         available: bool = True) -> CartLine:
    return CartLine(product_id, f"SKU-{product_id}", product_id, quantity, Decimal(price),
                    available=available)


def test_totals_count_only_what_can_be_bought() -> None:
    cart = Cart("alice", (line("a", 2, "12900"), line("b", 1, "3500"),
                          line("c", 3, "100", available=False)))
    assert [li.subtotal for li in cart.lines] == [Decimal(25800), Decimal(3500), Decimal(300)]
    assert cart.total == Decimal(29300)
    assert Cart("bob").total == 0


def test_order_items_are_sorted_so_a_retry_sends_the_same_request() -> None:
    cart = Cart("alice", (line("b", 1), line("a", 3)))
    assert cart.order_items() == [("a", 3), ("b", 1)]


def test_an_empty_cart_or_one_with_unavailable_items_cannot_be_ordered() -> None:
    with pytest.raises(CartError) as empty:
        Cart("alice").order_items()
    assert empty.value.reason == "empty_cart"
    with pytest.raises(CartError) as gone:
        Cart("alice", (line("a"), line("z", available=False))).order_items()
    assert gone.value.reason == "unavailable_items" and "z" in str(gone.value)


def test_the_cart_holds_at_most_one_orders_worth_of_products() -> None:
    full = Cart("alice", tuple(line(f"p{i}") for i in range(MAX_LINES)))
    full.check_room_for("p0")  # changing a line is fine
    with pytest.raises(CartError) as exc:
        full.check_room_for("new")
    assert exc.value.reason == "cart_full"
    Cart("alice", full.lines[:-1]).check_room_for("new")


@pytest.mark.parametrize("quantity", [0, -1, 101])
def test_quantities_are_1_to_100(quantity: int) -> None:
    assert check_quantity(1) == 1 and check_quantity(100) == 100
    with pytest.raises(CartError):
        check_quantity(quantity)


@pytest.mark.parametrize("amount", ["-1", "NaN", "Infinity", "abc", "1e30", ""])
def test_prices_from_the_catalog_are_checked(amount: str) -> None:
    assert parse_price("12900") == Decimal(12900) and parse_price("0.50") == Decimal("0.50")
    with pytest.raises(CartError):
        parse_price(amount)


def test_amounts_are_formatted_per_currency() -> None:
    assert format_amount(Decimal("12900.00")) == "12900"
    assert format_amount(Decimal("10.5"), "USD") == "10.50"


def test_the_order_key_is_derived_stably_and_fits_orders_limit() -> None:
    key = order_idempotency_key("k" * 200)
    assert key == order_idempotency_key("k" * 200) and len(key) <= 200
    assert order_idempotency_key("a") != order_idempotency_key("b")
    assert order_idempotency_key("a") != "a"


def checkout(address: str = "x", *, card: str | None = None,
             method: str | None = None) -> CheckOutCart:
    return CheckOutCart(address, PaymentChoice(payment_method_id=method, card_number=card))


def test_fingerprints_tell_checkouts_apart_by_their_values() -> None:
    a = checkout(card="4242424242424242")
    assert request_fingerprint(a) == request_fingerprint(checkout(card="4242424242424242"))
    assert request_fingerprint(a) != request_fingerprint(checkout("y", card="4242424242424242"))


def test_a_fingerprint_holds_nothing_derived_from_the_whole_card_number() -> None:
    card = checkout(card="4242424242424242")
    same_last4 = checkout(card="4000000000024242")
    other = checkout(card="4000000000000002")
    assert request_fingerprint(card) == request_fingerprint(same_last4)
    assert request_fingerprint(card) != request_fingerprint(other)
    method = checkout(method="pm_1")
    assert request_fingerprint(method) != request_fingerprint(checkout(method="pm_2"))
    assert request_fingerprint(method) != request_fingerprint(card)


def test_fingerprints_are_the_ones_stored_before_checkouts_took_a_command() -> None:
    # Computed by the dict-taking request_fingerprint (before ADR 0025) from the checkout
    # request's JSON: a key stored then, retried after the upgrade, still matches.
    assert request_fingerprint(checkout("a1", method="pm_1")) == (
        "451a74bcd5404fb237bdebb97eddc0c7c2cb8eb9ad5adaa49e1f97b4301a7ccd")
    assert request_fingerprint(checkout("a1", card="4242424242424242")) == (
        "42b40f9f366d78cc870e51fa68356eea6589ef17efaefecf9ed63d545a96c8f6")


def test_a_payment_is_one_of_the_two_and_orders_is_sent_only_that_one() -> None:
    assert checkout(method="pm_1").payment.as_json() == {"payment_method_id": "pm_1"}
    assert checkout(card="4242424242424242").payment.as_json() == {
        "card_number": "4242424242424242"}
    assert "4242424242424242" not in repr(checkout(card="4242424242424242"))
    for neither_or_both in ({}, {"method": "pm_1", "card": "4242424242424242"}):
        with pytest.raises(ValueError, match="either"):
            checkout(**neither_or_both)  # type: ignore[arg-type]
