"""Judging a step from the chassis's metrics: windows, quantiles, thresholds."""

from __future__ import annotations

import pytest
from chassis.metrics import HttpMetrics
from mercato.release.analysis import Sample, Thresholds, judge, parse, total
from mercato.release.run import canary_steps


def page(requests: list[tuple[str, int, float]]) -> str:
    """A real /metrics page after serving ``(route, status, seconds)`` requests."""
    metrics = HttpMetrics("catalog")
    for route, status, seconds in requests:
        metrics.observe("GET", route, status, seconds)
    return metrics.render().body.decode()


def test_parse_counts_user_routes_and_leaves_out_health_checks_and_scrapes() -> None:
    sample = parse(page([("/api/catalog/products", 200, 0.01)] * 8
                        + [("/api/catalog/products", 500, 0.02)] * 2
                        + [("/health/ready", 200, 0.001)] * 50 + [("/metrics", 200, 0.001)]))
    assert sample.requests == 10 and sample.errors == 2
    assert sample.error_rate == pytest.approx(0.2)
    assert sample.buckets[float("inf")] == 10


def test_a_window_is_the_difference_between_two_scrapes() -> None:
    first = parse(page([("/p", 200, 0.01)] * 5))
    later = parse(page([("/p", 200, 0.01)] * 5 + [("/p", 503, 0.3)] * 5))
    window = later - first
    assert (window.requests, window.errors) == (5, 5)
    # An instance that restarted (its counters went down) counts from zero.
    assert (first - later).requests == 5
    assert total([window, window]).requests == 10


def test_p95_is_interpolated_within_its_bucket() -> None:
    fast = parse(page([("/p", 200, 0.004)] * 100))
    slow = parse(page([("/p", 200, 0.004)] * 50 + [("/p", 200, 0.9)] * 50))
    assert fast.quantile(0.95) is not None and fast.quantile(0.95) <= 0.005
    assert slow.quantile(0.95) is not None and slow.quantile(0.95) > 0.5
    assert Sample().quantile(0.95) is None


LIMITS = Thresholds(max_error_rate=0.01, error_ratio=2.0, max_p95_s=0.5, latency_ratio=1.5,
                    min_requests=20)


def test_errors_fail_the_new_side_against_a_clean_old_side() -> None:
    old = parse(page([("/p", 200, 0.01)] * 200))
    new = parse(page([("/p", 200, 0.01)] * 80 + [("/p", 500, 0.01)] * 20))
    verdict = judge(old, new, LIMITS)
    assert not verdict.ok and "error rate 20.0 %" in verdict.reasons[0]


def test_an_old_side_failing_as_much_is_no_reason_to_roll_back() -> None:
    old = parse(page([("/p", 200, 0.01)] * 90 + [("/p", 500, 0.01)] * 10))
    new = parse(page([("/p", 200, 0.01)] * 88 + [("/p", 500, 0.01)] * 12))
    assert judge(old, new, LIMITS).ok  # 12 % <= 10 % x 2


def test_latency_fails_only_above_both_limits() -> None:
    old = parse(page([("/p", 200, 0.01)] * 100))
    slow = parse(page([("/p", 200, 0.9)] * 100))
    assert not judge(old, slow, LIMITS).ok
    slow_old = parse(page([("/p", 200, 0.9)] * 100))
    assert judge(slow_old, slow, LIMITS).ok


def test_too_little_traffic_passes_unjudged_but_errors_still_fail() -> None:
    old = parse(page([("/p", 200, 0.01)] * 100))
    quiet = judge(old, parse(page([("/p", 200, 0.01)] * 3)), LIMITS)
    assert quiet.ok and not quiet.judged
    failing = judge(old, parse(page([("/p", 500, 0.01)] * 3)), LIMITS)
    assert not failing.ok and failing.judged


def test_canary_steps() -> None:
    assert canary_steps(10, [10, 50, 100]) == (10, 50, 100)
    assert canary_steps(10, None) == (10, 100)
    assert canary_steps(25, [50, 5]) == (25, 50, 100)
    with pytest.raises(ValueError, match="percentage"):
        canary_steps(0, None)
    with pytest.raises(ValueError, match="percentage"):
        canary_steps(10, [150])
