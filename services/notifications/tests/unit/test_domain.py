from datetime import timedelta

import pytest
from notifications.domain.model import (
    KINDS,
    ORDER_APPROVED,
    ORDER_CANCELLED,
    ORDER_PLACED,
    ORDER_REJECTED,
    SHIPMENT_DELIVERED,
    SHIPMENT_DISPATCHED,
    Facts,
    RetryPolicy,
    render,
    shipment_kind,
)

FACTS = Facts("order-42", total="12000", currency="KRW", reason="payment_declined",
              tracking_number="MSABC123", items=3)


@pytest.mark.parametrize(("kind", "subject", "in_body"), [
    (ORDER_PLACED, "We received your order order-42", ["3 item(s)", "12000 KRW"]),
    (ORDER_APPROVED, "Your order order-42 is confirmed", ["12000 KRW"]),
    (ORDER_REJECTED, "We could not complete your order order-42", ["payment_declined"]),
    (ORDER_CANCELLED, "Your order order-42 is cancelled", ["payment_declined"]),
    (SHIPMENT_DISPATCHED, "Your order order-42 is on its way", ["Tracking number: MSABC123"]),
    (SHIPMENT_DELIVERED, "Your order order-42 has been delivered", ["MSABC123"]),
])
def test_each_kind_has_its_own_email(kind: str, subject: str, in_body: list[str]) -> None:
    mail = render(kind, FACTS)
    assert mail.subject == subject
    for part in in_body:
        assert part in mail.body
    assert "order-42" in mail.body


def test_every_kind_renders_and_the_subjects_differ() -> None:
    subjects = {render(kind, Facts("o1")).subject for kind in KINDS}
    assert len(subjects) == len(KINDS)


def test_missing_facts_read_naturally() -> None:
    assert "no reason given" in render(ORDER_CANCELLED, Facts("o1")).body
    assert "not yet known" in render(SHIPMENT_DISPATCHED, Facts("o1")).body
    assert "item(s)" not in render(ORDER_PLACED, Facts("o1", total="1", currency="KRW")).body


def test_values_cannot_inject_headers_or_grow_without_bound() -> None:
    mail = render(ORDER_REJECTED, Facts("o1\r\nBcc: x@evil", reason="r" * 5000))
    assert "\n" not in mail.subject and "\r" not in mail.subject
    assert len(mail.body) < 400


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown notification kind"):
        render("order_exploded", FACTS)


@pytest.mark.parametrize(("status", "kind"), [
    ("DISPATCHED", SHIPMENT_DISPATCHED), ("DELIVERED", SHIPMENT_DELIVERED),
    ("delivered", SHIPMENT_DELIVERED), ("IN_TRANSIT", None), ("CREATED", None),
    ("LOST_AT_SEA", None),
])
def test_only_dispatch_and_delivery_send_a_shipment_email(status: str, kind: str | None) -> None:
    assert shipment_kind(status) == kind


def test_retries_back_off_exponentially_up_to_a_cap_then_give_up() -> None:
    policy = RetryPolicy(max_attempts=4, base=timedelta(seconds=2), cap=timedelta(seconds=5))
    assert [policy.delay(n).total_seconds() for n in (1, 2, 3, 4)] == [2, 4, 5, 5]
    assert [policy.gives_up(n) for n in (1, 3, 4, 5)] == [False, False, True, True]
