import pytest
from storefront.domain.images import initials, product_svg
from storefront.domain.model import (
    Availability,
    Paging,
    can_cancel,
    clean_card_number,
    format_money,
    luhn_ok,
    money_of,
    order_needs_polling,
)


@pytest.mark.parametrize(("amount", "currency", "shown"), [
    ("12900", "KRW", "₩12,900"), ("1234567", "KRW", "₩1,234,567"), ("0", "KRW", "₩0"),
    ("12900.00", "KRW", "₩12,900"), ("19.5", "USD", "$19.50"), ("5", "CHF", "5.00 CHF"),
    ("-3000", "KRW", "-₩3,000"), ("abc", "KRW", "abc KRW")])
def test_money_is_shown_as_people_read_it(amount: str, currency: str, shown: str) -> None:
    assert format_money(amount, currency) == shown


def test_a_service_money_document_is_formatted_and_absence_is_a_dash() -> None:
    assert money_of({"amount": "49000", "currency": "KRW"}) == "₩49,000"
    assert money_of(None) == "—"
    assert money_of({"currency": "KRW"}) == "—"


def test_luhn_and_what_people_type() -> None:
    assert luhn_ok(clean_card_number("4242 4242 4242 4242"))
    assert luhn_ok(clean_card_number("4000-0000-0000-0002"))
    assert not luhn_ok("4242424242424241")
    assert not luhn_ok("42424242")  # too short
    assert not luhn_ok("\uff14\uff12" * 8)  # fullwidth digits: not ASCII


def test_availability_labels_and_unknown_stock_still_sells() -> None:
    assert Availability(known=False).label == "Availability unknown"
    assert Availability(known=False).can_buy
    assert Availability(known=True, available=0).label == "Out of stock"
    assert not Availability(known=True, available=0).can_buy
    assert Availability(known=True, available=3).label == "Only 3 left"
    assert Availability(known=True, available=50).label == "In stock"


def test_paging() -> None:
    assert Paging(page=1, page_size=12, total=0).pages == 1
    p = Paging(page=2, page_size=12, total=25)
    assert (p.pages, p.has_previous, p.has_next) == (3, True, True)
    assert not Paging(page=3, page_size=12, total=25).has_next


def test_an_order_page_polls_until_settled_and_tracked() -> None:
    pending, approved = {"status": "PENDING"}, {"status": "APPROVED"}
    assert order_needs_polling(pending, None, True)
    assert order_needs_polling(approved, None, True)
    assert order_needs_polling(approved, {"tracking_number": "TRK1"}, False)
    assert not order_needs_polling(approved, {"tracking_number": "TRK1"}, True)
    assert not order_needs_polling({"status": "REJECTED"}, None, True)


def test_cancel_is_offered_before_dispatch_only() -> None:
    approved = {"status": "APPROVED", "cancel_requested": False}
    assert can_cancel(approved, {"status": "CREATED"})
    assert can_cancel({"status": "PENDING", "cancel_requested": False}, None)
    assert not can_cancel(approved, {"status": "DISPATCHED"})
    assert not can_cancel({"status": "REJECTED"}, None)
    assert not can_cancel({**approved, "cancel_requested": True}, None)


def test_product_pictures_are_drawn_from_name_and_category_and_escape_text() -> None:
    assert initials("electric kettle") == "EK"
    assert initials("  ") == "?"
    svg = product_svg("<script>", "kitchen")
    assert svg.startswith("<svg") and "<script>" not in svg
    assert product_svg("Kettle", "kitchen") == product_svg("Kettle", "kitchen")
    assert product_svg("Kettle", "kitchen") != product_svg("Kettle", "garden")
