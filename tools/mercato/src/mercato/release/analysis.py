"""Judging a release step from the instances' own metrics (the chassis's HTTP series).

Every instance exposes cumulative ``http_requests_total``, ``http_request_errors_total``
(5xx) and ``http_request_duration_seconds`` on ``/metrics``. A step's window is the
difference between two scrapes of each instance, summed per side (old, new); health checks
and scrapes are left out: they are the platform talking to itself, not users.

The new side fails when its error rate is above both the absolute limit and the old side's
rate times the ratio, or its p95 latency above both the absolute limit and the old side's p95
times the ratio. The absolute floors keep a healthy old side (0 errors, 5 ms) from making
noise a failure; the ratios let a side that is slow or failing anyway be compared fairly.
The same rule is the Argo Rollouts AnalysisTemplate's under deploy/k8s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "http_requests"
ERRORS = "http_request_errors"
DURATION = "http_request_duration_seconds"
# The platform's own traffic: readiness checks (Envoy, the supervisor) and scrapes.
INTERNAL_ROUTES = ("/health/", "/metrics")


@dataclass
class Sample:
    """Cumulative counts of one scrape (or a window's difference between two)."""

    requests: float = 0.0
    errors: float = 0.0
    # upper bound (le) -> cumulative count of requests at most that slow
    buckets: dict[float, float] = field(default_factory=dict)
    latency_sum: float = 0.0

    def __add__(self, other: Sample) -> Sample:
        keys = set(self.buckets) | set(other.buckets)
        return Sample(self.requests + other.requests, self.errors + other.errors,
                      {k: self.buckets.get(k, 0.0) + other.buckets.get(k, 0.0) for k in keys},
                      self.latency_sum + other.latency_sum)

    def __sub__(self, earlier: Sample) -> Sample:
        # A counter that went down is an instance that restarted: its window starts at 0.
        if self.requests < earlier.requests:
            return self
        return Sample(self.requests - earlier.requests, self.errors - earlier.errors,
                      {k: v - earlier.buckets.get(k, 0.0) for k, v in self.buckets.items()},
                      self.latency_sum - earlier.latency_sum)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def quantile(self, q: float) -> float | None:
        """Latency quantile in seconds from the histogram, interpolated inside its bucket as
        Prometheus' histogram_quantile does; None without requests."""
        if not self.buckets:
            return None
        ordered = sorted(self.buckets.items())
        total = ordered[-1][1]
        if total <= 0:
            return None
        rank = q * total
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in ordered:
            if count >= rank:
                if math.isinf(bound):
                    return lower_bound  # beyond the last finite bucket: its bound
                if count == lower_count:
                    return bound
                return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                    count - lower_count)
            lower_bound, lower_count = bound, count
        return lower_bound


def _user_route(labels: Mapping[str, str]) -> bool:
    route = labels.get("route", "")
    return not any(route.startswith(p) for p in INTERNAL_ROUTES)


def parse(text: str) -> Sample:
    """The user-facing HTTP series of one ``/metrics`` page."""
    out = Sample()
    for family in text_string_to_metric_families(text):
        if family.name not in (REQUESTS, ERRORS, DURATION):
            continue
        for s in family.samples:
            if not _user_route(s.labels):
                continue
            if family.name == REQUESTS and s.name.endswith("_total"):
                out.requests += s.value
            elif family.name == ERRORS and s.name.endswith("_total"):
                out.errors += s.value
            elif s.name.endswith("_bucket"):
                le = float(s.labels["le"])
                out.buckets[le] = out.buckets.get(le, 0.0) + s.value
            elif s.name.endswith("_sum"):
                out.latency_sum += s.value
    return out


def total(samples: Iterable[Sample]) -> Sample:
    out = Sample()
    for s in samples:
        out = out + s
    return out


@dataclass(frozen=True)
class Thresholds:
    max_error_rate: float = 0.01  # absolute: new error rate allowed whatever the old's
    error_ratio: float = 2.0  # relative: new error rate allowed up to old rate x this
    max_p95_s: float = 0.5  # absolute: new p95 allowed whatever the old's
    latency_ratio: float = 1.5  # relative: new p95 allowed up to old p95 x this
    min_requests: int = 20  # fewer new requests in a window: too few to judge


@dataclass(frozen=True)
class Verdict:
    ok: bool
    judged: bool  # False: too little traffic reached the new instances to tell
    reasons: tuple[str, ...]
    old: Sample
    new: Sample

    def summary(self) -> str:
        def side(s: Sample) -> str:
            p95 = s.quantile(0.95)
            p95_text = f"{p95 * 1000:.0f} ms" if p95 is not None else "-"
            return (f"{s.requests:.0f} req, {s.error_rate * 100:.1f} % errors, "
                    f"p95 {p95_text}")
        return f"new: {side(self.new)} | old: {side(self.old)}"


def judge(old: Sample, new: Sample, limits: Thresholds) -> Verdict:
    reasons: list[str] = []
    error_limit = max(limits.max_error_rate, old.error_rate * limits.error_ratio)
    if new.requests and new.error_rate > error_limit:
        reasons.append(f"error rate {new.error_rate * 100:.1f} % above "
                       f"{error_limit * 100:.1f} % (old {old.error_rate * 100:.1f} %)")
    new_p95, old_p95 = new.quantile(0.95), old.quantile(0.95)
    if new_p95 is not None:
        latency_limit = max(limits.max_p95_s, (old_p95 or 0.0) * limits.latency_ratio)
        if new_p95 > latency_limit:
            reasons.append(f"p95 latency {new_p95 * 1000:.0f} ms above "
                           f"{latency_limit * 1000:.0f} ms")
    judged = new.requests >= limits.min_requests
    # Failing with few requests is still failing (errors are errors); passing needs enough.
    return Verdict(ok=not reasons, judged=judged or bool(reasons), reasons=tuple(reasons),
                   old=old, new=new)
