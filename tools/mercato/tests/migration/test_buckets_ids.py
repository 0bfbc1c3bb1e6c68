"""The sticky bucket and the legacy id ⇄ UUID mapping."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mercato.migration import ids
from mercato.migration.buckets import bucket_of, on_services
from mercato.migration.capabilities import capability, of_path


def test_a_customer_keeps_their_bucket_whatever_the_case_or_spacing() -> None:
    assert bucket_of("Ana@Example.com ") == bucket_of("ana@example.com")
    assert 0 <= bucket_of("ana@example.com") < 100


def test_buckets_spread_evenly() -> None:
    counts = Counter(bucket_of(f"customer-{i}@example.com") for i in range(20_000))
    assert len(counts) == 100
    # 200 expected per bucket; a byte-modulo hash would put ~1.5x that in buckets 0-55.
    assert max(counts.values()) < 290 and min(counts.values()) > 120


@given(st.text(min_size=1).filter(str.strip), st.integers(0, 100), st.integers(0, 100))
def test_raising_a_share_never_moves_a_customer_back(key: str, a: int, b: int) -> None:
    low, high = sorted((a, b))
    bucket = bucket_of(key)
    assert not (on_services(bucket, low) and not on_services(bucket, high))


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError):
        bucket_of("  ")


@given(st.sampled_from(sorted(ids.TABLES)), st.integers(1, ids.MAX_ID))
def test_legacy_ids_round_trip(table: str, n: int) -> None:
    u = ids.services_id(table, n)
    assert u.version == 8
    assert ids.legacy_id(table, str(u)) == n


def test_other_uuids_and_other_tables_have_no_legacy_id() -> None:
    assert ids.legacy_id("products", uuid.uuid4()) is None
    assert ids.legacy_id("categories", ids.services_id("products", 7)) is None
    assert ids.legacy_id("products", "not-a-uuid") is None
    with pytest.raises(ValueError):
        ids.services_id("products", 0)


def test_paths_belong_to_their_capability() -> None:
    assert of_path("/shop/products/12") is capability("catalog")
    assert of_path("/shop/products") is capability("catalog")
    assert of_path("/shop/productsx") is None
    assert of_path("/shop/checkout") is capability("checkout")
    assert of_path("/shop/admin/products") is None
