"""Whether a shift may go on: the ACL's counters since the last step, judged.

A shift towards the services refuses when, since the capability's last step,
- the shadow comparisons disagree more often than ``max_mismatch_rate``, or
- the services side failed (5xx or no answer) more often than ``max_error_rate``,
each judged only over at least ``min_samples`` requests: with fewer there is nothing to
judge, and the shift goes on with a warning (an idle laptop must not block a migration;
a busy shop always has the samples). A capability the ACL cannot translate never shifts.
A shift back towards the monolith is never refused: that is the way out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from mercato.migration.capabilities import Capability

Counters = dict[tuple[str, ...], float]


def parse_acl_metrics(text: str) -> Counters:
    """The ACL's counters keyed by (sample name, label values in label-name order): the
    capability comes first in each (``capability`` sorts first)."""
    counters: Counters = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                labels = [sample.labels[k] for k in sorted(sample.labels)]
                counters[(sample.name, *labels)] = sample.value
    return counters


@dataclass(frozen=True)
class Stats:
    comparisons: float = 0
    mismatches: float = 0
    skipped: float = 0
    requests: Mapping[str, float] = field(default_factory=dict)  # side -> requests
    errors: Mapping[str, float] = field(default_factory=dict)  # side -> failed requests

    @property
    def mismatch_rate(self) -> float | None:
        return self.mismatches / self.comparisons if self.comparisons else None

    def error_rate(self, side: str) -> float | None:
        n = self.requests.get(side, 0)
        return self.errors.get(side, 0) / n if n else None


def stats(counters: Counters, capability: str) -> Stats:
    comparisons = mismatches = skipped = 0.0
    requests: dict[str, float] = {}
    errors: dict[str, float] = {}
    for key, value in counters.items():
        name, labels = key[0], key[1:]
        if not labels or labels[0] != capability:
            continue
        if name == "acl_shadow_comparisons_total":
            comparisons += value
        elif name == "acl_shadow_mismatches_total":
            mismatches += value
        elif name == "acl_shadow_skipped_total":
            skipped += value
        elif name == "acl_upstream_requests_total":
            outcome, side = labels[1], labels[3]  # capability, outcome, role, side
            requests[side] = requests.get(side, 0) + value
            if outcome == "error":
                errors[side] = errors.get(side, 0) + value
    return Stats(comparisons, mismatches, skipped, requests, errors)


def since(now: Counters, before: Counters) -> Counters:
    """The counters' growth since ``before``; an ACL restarted meanwhile (a counter went
    down) counts from zero."""
    if any(now.get(k, 0) < v for k, v in before.items()):
        return dict(now)
    return {k: v - before.get(k, 0) for k, v in now.items()}


@dataclass(frozen=True)
class Thresholds:
    max_mismatch_rate: float = 0.01
    max_error_rate: float = 0.01
    min_samples: int = 20


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def _pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def judge(cap: Capability, current: int, target: int, window: Stats,
          limits: Thresholds = Thresholds()) -> Verdict:
    if target <= current:
        return Verdict(True, warnings=("towards the monolith: not judged",)
                       if target < current else ())
    if not cap.translated:
        return Verdict(False, (f"the anti-corruption layer cannot answer {cap.name}'s legacy "
                               "paths from the services yet",))
    reasons: list[str] = []
    warnings: list[str] = []
    rate = window.mismatch_rate
    if window.comparisons < limits.min_samples:
        warnings.append(f"only {window.comparisons:g} shadow comparisons since the last step "
                        f"(fewer than {limits.min_samples}): the mismatch rate is not judged")
    elif rate is not None and rate > limits.max_mismatch_rate:
        reasons.append(f"shadow mismatch rate {_pct(rate)} is above "
                       f"{_pct(limits.max_mismatch_rate)} ({window.mismatches:g} of "
                       f"{window.comparisons:g}; see `mercato migrate mismatches {cap.name}`)")
    served = window.requests.get("services", 0)
    errors = window.error_rate("services")
    if served < limits.min_samples:
        warnings.append(f"only {served:g} requests on the services side since the last step: "
                        "its error rate is not judged")
    elif errors is not None and errors > limits.max_error_rate:
        reasons.append(f"services side error rate {_pct(errors)} is above "
                       f"{_pct(limits.max_error_rate)} ({window.errors.get('services', 0):g} "
                       f"of {served:g})")
    return Verdict(not reasons, tuple(reasons), tuple(warnings))
