"""The sync's merge rule (ADR 0029, 0031), without any server."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from mercato.migration.sync.records import (
    MERGED,
    Account,
    Address,
    Record,
    merge,
    price_text,
    slug_of,
)

BASE = Record(sku="LG-1", name="Kettle", description="", category="kitchen",
              price="39000.00", currency="KRW", active=True)


def test_a_change_on_one_side_is_taken_from_that_side() -> None:
    legacy = replace(BASE, name="Blue kettle")
    services = replace(BASE, price="41000.00")
    done = merge(BASE, legacy, services)
    assert done.record == replace(BASE, name="Blue kettle", price="41000.00")
    assert done.conflicts == ()


def test_the_same_field_changed_on_both_sides_is_a_conflict_the_services_win() -> None:
    done = merge(BASE, replace(BASE, name="L", active=False), replace(BASE, name="S"))
    assert done.conflicts == ("name",)
    assert done.record == replace(BASE, name="S", active=False)
    # Both sides made the same change: no conflict.
    same = merge(BASE, replace(BASE, name="X"), replace(BASE, name="X"))
    assert same.conflicts == () and same.record.name == "X"


def test_without_a_base_every_difference_is_a_conflict_and_one_side_alone_is_copied() -> None:
    done = merge(None, replace(BASE, name="L"), BASE)
    assert done.conflicts == ("name",) and done.record == BASE
    assert merge(None, BASE, None).record == BASE
    assert merge(BASE, None, replace(BASE, name="S")).record.name == "S"


records = st.builds(Record, sku=st.just("LG-1"), name=st.sampled_from(["a", "b", "c"]),
                    description=st.sampled_from(["", "d"]),
                    category=st.sampled_from(["x", "y"]),
                    price=st.sampled_from(["1.00", "2.00"]), currency=st.just("KRW"),
                    active=st.booleans())


@given(records, records, records)
def test_merging_is_deterministic_and_settles(base: Record, legacy: Record,
                                              services: Record) -> None:
    done = merge(base, legacy, services)
    assert merge(base, legacy, services) == done
    # Once both sides hold the result, merging again changes nothing and finds no conflict.
    assert merge(done.record, done.record, done.record).record == done.record
    for name in MERGED:
        assert getattr(done.record, name) in (getattr(legacy, name), getattr(services, name))
        if name in done.conflicts:
            assert getattr(done.record, name) == getattr(services, name)


def test_prices_and_slugs() -> None:
    assert price_text("39000") == "39000.00" and price_text("990.5") == "990.50"
    assert slug_of("Books & Paper", 3) == "books-paper"
    assert slug_of("—", 7) == "category-7"


ANN = Account(email="ann@shop.test", name="Ann", password_hash="$argon2id$v=19$m=8,t=1,p=1$a$b")


def test_an_account_merges_field_by_field_the_services_win_a_conflict() -> None:
    upgraded = replace(ANN, password_hash="$argon2id$v=19$m=65536,t=3,p=4$c$d")
    done = merge(ANN, replace(ANN, name="Ann (legacy)", email="ann@else.test"),
                 replace(upgraded, name="Ann (services)"))
    assert done.conflicts == ("name",)
    assert done.record == Account(email="ann@else.test", name="Ann (services)",
                                  password_hash=upgraded.password_hash)


def test_an_address_merges_the_fields_both_sides_have() -> None:
    base = Address(owner="u1", recipient="Ann", line1="1 Road", city="Seoul",
                   postal_code="04524", country="KR")
    done = merge(base, replace(base, city="Busan"), replace(base, postal_code="04525"))
    assert done.record == replace(base, city="Busan", postal_code="04525")
    assert done.conflicts == ()


def test_a_record_the_sync_stated_before_it_died_is_not_taken_for_a_services_change() -> None:
    """The sync told the services "Kettle v2" (the monolith's change), then died before the
    monolith's transaction (and the new base) committed; the monolith went on to v3."""
    told = replace(BASE, name="Kettle v2")
    done = merge(BASE, replace(BASE, name="Kettle v3"), told, services_base=told)
    assert done.record.name == "Kettle v3" and done.conflicts == ()
    # Without knowing it, the same state reads as a conflict the services win.
    assert merge(BASE, replace(BASE, name="Kettle v3"), told).record.name == "Kettle v2"
    # Never synced before: what the services hold is what the sync told them.
    assert merge(None, replace(BASE, name="Kettle v3"), told,
                 services_base=told).record.name == "Kettle v3"
