"""The shift guard: judged on the ACL's counters since the last step."""

from __future__ import annotations

from dataclasses import replace

from mercato.migration.capabilities import capability
from mercato.migration.guard import Stats, Thresholds, judge, parse_acl_metrics, since, stats

CATALOG = capability("catalog")
METRICS = """\
# TYPE acl_upstream_requests_total counter
acl_upstream_requests_total{capability="catalog",outcome="ok",role="primary",side="services"} 95
acl_upstream_requests_total{capability="catalog",outcome="error",role="shadow",side="services"} 5
acl_upstream_requests_total{capability="catalog",outcome="ok",role="primary",side="legacy"} 400
acl_upstream_requests_total{capability="cart",outcome="error",role="primary",side="services"} 9
# TYPE acl_shadow_comparisons_total counter
acl_shadow_comparisons_total{capability="catalog",route="/shop/products"} 150
acl_shadow_comparisons_total{capability="catalog",route="/shop/products/{id}"} 50
# TYPE acl_shadow_mismatches_total counter
acl_shadow_mismatches_total{capability="catalog",route="/shop/products/{id}"} 3
"""


def test_counters_add_up_per_capability() -> None:
    s = stats(parse_acl_metrics(METRICS), "catalog")
    assert (s.comparisons, s.mismatches) == (200, 3)
    assert s.requests == {"services": 100, "legacy": 400}
    assert s.errors == {"services": 5}
    assert s.mismatch_rate == 0.015 and s.error_rate("services") == 0.05


def test_a_clean_window_lets_the_shift_go_on() -> None:
    window = Stats(comparisons=200, mismatches=1, requests={"services": 100},
                   errors={"services": 1})
    assert judge(CATALOG, 10, 50, window) == judge(CATALOG, 0, 10, window)
    assert judge(CATALOG, 10, 50, window).ok


def test_too_many_mismatches_refuse() -> None:
    verdict = judge(CATALOG, 0, 10, stats(parse_acl_metrics(METRICS), "catalog"),
                    Thresholds(max_error_rate=0.10))
    assert not verdict.ok
    assert verdict.reasons == ("shadow mismatch rate 1.5 % is above 1.0 % (3 of 200; see "
                               "`mercato migrate mismatches catalog`)",)


def test_a_failing_services_side_refuses() -> None:
    window = Stats(comparisons=200, requests={"services": 100}, errors={"services": 30})
    verdict = judge(CATALOG, 10, 50, window)
    assert not verdict.ok and "error rate 30.0 %" in verdict.reasons[0]


def test_too_few_samples_warn_instead_of_judging() -> None:
    window = Stats(comparisons=3, mismatches=3, requests={"services": 2}, errors={"services": 2})
    verdict = judge(CATALOG, 0, 10, window)
    assert verdict.ok and len(verdict.warnings) == 2


def test_back_towards_the_monolith_is_never_refused() -> None:
    awful = Stats(comparisons=100, mismatches=100, requests={"services": 100},
                  errors={"services": 100})
    assert judge(CATALOG, 50, 0, awful).ok
    assert not judge(CATALOG, 0, 10, awful).ok


def test_an_untranslated_capability_cannot_shift() -> None:
    verdict = judge(replace(capability("cart"), translated=False), 0, 10, Stats())
    assert not verdict.ok and "cannot answer cart's legacy paths" in verdict.reasons[0]


def test_the_window_starts_at_the_last_step() -> None:
    before = {("acl_shadow_comparisons_total", "catalog", "/shop/products"): 100.0}
    now = {("acl_shadow_comparisons_total", "catalog", "/shop/products"): 130.0}
    assert since(now, before) == {("acl_shadow_comparisons_total", "catalog",
                                   "/shop/products"): 30.0}
    # The ACL restarted: its counters start again from zero.
    restarted = {("acl_shadow_comparisons_total", "catalog", "/shop/products"): 7.0}
    assert since(restarted, before) == restarted
