from datetime import UTC, datetime, timedelta

import pytest
from shipping.domain.model import (
    CANCELLED,
    CREATED,
    DELIVERED,
    DISPATCHED,
    IN_TRANSIT,
    INVALID_ADDRESS,
    INVALID_LINES,
    TRACKING_LENGTH,
    TRACKING_PREFIX,
    Address,
    Line,
    Shipment,
    ShippingError,
    Timetable,
    merge_lines,
    new_tracking_number,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TIMES = Timetable(to_dispatched=timedelta(seconds=30), to_in_transit=timedelta(seconds=60),
                  to_delivered=timedelta(seconds=120))
GOOD = {"name": "Kim Min-ji", "line1": "1 Sejong-daero", "city": "Seoul",
        "postal_code": "04524", "country": "kr"}


def address(**overrides: str | None) -> Address:
    return Address.checked(**{**GOOD, **overrides})


def shipment(now: datetime = NOW) -> Shipment:
    return Shipment.create("s1", "o1", "c1", address(), [("MUG", 1), ("TEA", 2)], now=now,
                           timetable=TIMES, tracking_number=lambda: "MSTEST0000001")


def test_address_is_cleaned_and_country_upper_cased() -> None:
    a = address(name="  Kim  ", line2="  ", phone=" 010 ")
    assert (a.name, a.country, a.line2, a.phone) == ("Kim", "KR", None, "010")


@pytest.mark.parametrize("overrides", [
    {"name": ""}, {"line1": "   "}, {"city": None}, {"postal_code": ""},
    {"country": "KOR"}, {"country": "K"}, {"country": "1R"}, {"country": ""},
    {"name": "x" * 201}, {"line2": "y" * 201},
])
def test_an_undeliverable_address_is_refused(overrides: dict) -> None:
    with pytest.raises(ShippingError) as refused:
        address(**overrides)
    assert refused.value.reason == INVALID_ADDRESS


def test_lines_are_merged_per_sku_and_checked() -> None:
    assert merge_lines([("TEA", 1), ("MUG", 2), ("TEA", 3)]) == (Line("MUG", 2), Line("TEA", 4))
    for bad in ([], [("MUG", 0)], [("", 1)], [("X" * 65, 1)]):
        with pytest.raises(ShippingError) as refused:
            merge_lines(bad)
        assert refused.value.reason == INVALID_LINES


def test_tracking_numbers_are_unambiguous_and_distinct() -> None:
    numbers = {new_tracking_number() for _ in range(1000)}
    assert len(numbers) == 1000
    for n in numbers:
        assert len(n) == TRACKING_LENGTH and n.startswith(TRACKING_PREFIX)
        assert not set(n[len(TRACKING_PREFIX):]) & set("0O1I")


def test_a_new_shipment_is_held_until_released_then_waits_for_the_carrier() -> None:
    s = shipment()
    assert (s.status, s.tracking_number, s.next_move_at) == (CREATED, "MSTEST0000001", None)
    assert [(h.status, h.at) for h in s.history] == [(CREATED, NOW)]
    assert not s.is_tombstone and s.cancellable and not s.released
    assert not s.is_due(NOW + timedelta(days=1))  # held: the order is not approved yet
    later = NOW + timedelta(seconds=5)
    assert s.release(now=later, timetable=TIMES) is True and s.released
    assert s.release(now=later + timedelta(seconds=9), timetable=TIMES) is False
    assert s.next_move_at == later + timedelta(seconds=30) and s.cancellable
    assert not s.is_due(later + timedelta(seconds=29)) and s.is_due(later + timedelta(seconds=30))


def released(now: datetime = NOW) -> Shipment:
    s = shipment(now)
    s.release(now=now, timetable=TIMES)
    return s


def test_the_carrier_moves_it_along_every_status_then_stops() -> None:
    s = released()
    t1 = NOW + timedelta(seconds=30)
    assert s.advance(now=t1, timetable=TIMES) == DISPATCHED
    assert s.next_move_at == t1 + timedelta(seconds=60) and not s.cancellable
    t2 = t1 + timedelta(seconds=60)
    assert s.advance(now=t2, timetable=TIMES) == IN_TRANSIT
    assert s.next_move_at == t2 + timedelta(seconds=120)
    t3 = t2 + timedelta(seconds=120)
    assert s.advance(now=t3, timetable=TIMES) == DELIVERED
    assert s.next_move_at is None and not s.is_due(t3 + timedelta(days=1))
    assert s.advance(now=t3, timetable=TIMES) is None
    assert [h.status for h in s.history] == [CREATED, DISPATCHED, IN_TRANSIT, DELIVERED]
    assert s.updated_at == t3


def test_only_a_created_shipment_can_be_cancelled() -> None:
    s = shipment()
    assert s.cancel(reason="payment_declined", now=NOW) is True
    assert (s.status, s.reason, s.next_move_at) == (CANCELLED, "payment_declined", None)
    assert s.cancel(reason="again", now=NOW) is False and s.reason == "payment_declined"
    assert s.advance(now=NOW, timetable=TIMES) is None  # the carrier never takes it

    dispatched = shipment()
    dispatched.advance(now=NOW, timetable=TIMES)
    assert dispatched.cancel(reason=None, now=NOW) is False
    assert dispatched.status == DISPATCHED


def test_a_cancel_before_the_create_leaves_a_tombstone() -> None:
    t = Shipment.tombstone("s1", "o1", reason="saga_timeout", now=NOW)
    assert (t.status, t.customer_id, t.tracking_number, t.next_move_at) == (
        CANCELLED, None, None, None)
    assert t.is_tombstone and not t.cancellable and not t.is_due(NOW + timedelta(days=1))
    assert [h.status for h in t.history] == [CANCELLED]
