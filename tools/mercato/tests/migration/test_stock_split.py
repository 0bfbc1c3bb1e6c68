"""The stock split's arithmetic (ADR 0034), on every share and count Hypothesis finds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mercato.migration.stock.split import plan, services_target

free = st.integers(0, 10_000)
percent = st.integers(0, 100)
floor = st.integers(0, 5)


@given(free, percent, floor)
def test_the_target_is_a_share_of_what_there_is(n: int, p: int, f: int) -> None:
    t = services_target(n, p, f)
    assert 0 <= t <= n
    if p == 0:
        assert t == 0
    if p == 100:
        assert t == n
    if 0 < p < 100 and n >= 2 * f:
        # Each side serving keeps its floor while there are units for both...
        assert f <= t <= n - f
        # ...and otherwise owns its share, rounded to the nearest unit.
        exact = n * p / 100
        if f <= exact <= n - f:
            assert abs(t - exact) <= 0.5
    if 0 < p < 100 and n < 2 * f:
        # Too few for both floors: the side with the larger share has its floor first.
        assert t == (min(f, n) if p >= 50 else n - min(f, n))


@given(free, percent, percent, floor)
def test_a_larger_share_never_owns_fewer_units(n: int, p: int, q: int, f: int) -> None:
    lo, hi = sorted((p, q))
    assert services_target(n, lo, f) <= services_target(n, hi, f)


@given(free, free, percent, floor)
def test_a_plan_reaches_the_target_and_moves_only_what_exists(
        legacy: int, services: int, p: int, f: int) -> None:
    move = plan(legacy, services, p, f).to_services
    assert -services <= move <= legacy  # units neither side has are never moved
    assert services + move == services_target(legacy + services, p, f)
    # Once there, nothing more moves.
    assert plan(legacy - move, services + move, p, f).to_services == 0


def test_examples() -> None:
    assert services_target(10, 50) == 5
    assert services_target(10, 5) == 1  # 0.5 rounds up
    assert services_target(10, 1) == 1  # the floor
    assert services_target(10, 99) == 9  # the monolith's floor
    assert services_target(1, 50) == 1 and services_target(1, 49) == 0
    assert plan(0, 4, 0).to_services == -4  # 0 %: every free unit goes back
    assert plan(6, 0, 100).to_services == 6


@pytest.mark.parametrize("args", [(-1, 50), (5, 101), (5, -1)])
def test_nonsense_is_refused(args: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        services_target(*args)
    with pytest.raises(ValueError):
        plan(-1, 0, 50)
