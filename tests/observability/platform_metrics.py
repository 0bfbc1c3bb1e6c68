"""What the observability tests read: every metric the platform exports (the chassis's
catalogue, the services' own, and the few from outside), the files under
deploy/observability, and the metric names a PromQL expression reads."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from chassis.metric_catalogue import CHASSIS_METRICS, MetricSpec
from mercato.deploy.dashboards import EXTERNAL_METRICS
from mercato.toolfetch import PrometheusTools, ensure_prometheus
from orders.metrics import ORDERS_METRICS

REPO = Path(__file__).resolve().parents[2]
OBSERVABILITY = REPO / "deploy" / "observability"
RULES = OBSERVABILITY / "prometheus" / "rules"
RULE_TESTS = OBSERVABILITY / "prometheus" / "tests"
DASHBOARDS = OBSERVABILITY / "grafana" / "dashboards"
OPERATIONS = REPO / "docs" / "operations.md"

SERVICE_METRICS: tuple[MetricSpec, ...] = (*CHASSIS_METRICS, *ORDERS_METRICS)
ALL_METRICS: tuple[MetricSpec, ...] = (*SERVICE_METRICS, *EXTERNAL_METRICS)

# Grafana's own variables that cannot stand in PromQL as written (the others sit inside
# label matchers' strings, which PromQL accepts as they are).
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def exported_series() -> set[str]:
    """Every sample name the platform's scrapes can show (a histogram's _bucket, ...)."""
    return {name for spec in ALL_METRICS for name in spec.series_names()}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads; raises ValueError when it is not PromQL."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name or next((m.value for m in node.matchers.matchers
                                      if m.name == "__name__"), None)
            if name is None:
                raise ValueError(f"a selector without a metric name in {expr!r}")
            names.add(name)
        elif isinstance(node, promql_parser.NumberLiteral | promql_parser.StringLiteral):
            pass
        else:
            children = _children(node)
            if children is None:
                raise ValueError(f"unexpected PromQL node {type(node).__name__} in {expr!r}")
            for child in children:
                walk(child)

    walk(promql_parser.parse(expr))
    return names


def _children(node: Any) -> list[Any] | None:
    """The sub-expressions of a PromQL node with any; None for a node this reader does not
    know (selectors and literals have none, and are the callers' own cases)."""
    if isinstance(node, promql_parser.MatrixSelector):
        return [node.vector_selector]
    if isinstance(node, promql_parser.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, promql_parser.AggregateExpr):
        return [node.expr] + ([node.param] if node.param is not None else [])
    if isinstance(node, promql_parser.Call):
        return list(node.args)
    if isinstance(node, promql_parser.ParenExpr | promql_parser.UnaryExpr
                  | promql_parser.SubqueryExpr):
        return [node.expr]
    return None


def rule_files() -> list[Path]:
    return sorted(RULES.glob("*.rules.yaml"))


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS.glob("*.test.yaml"))


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules(path: Path) -> list[dict[str, Any]]:
    return [rule for group in load(path)["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    """Every alerting rule by name, with the file it is in under ``file``."""
    found: dict[str, dict[str, Any]] = {}
    for path in rule_files():
        for rule in rules(path):
            if "alert" in rule:
                assert rule["alert"] not in found, f"alert {rule['alert']} defined twice"
                found[rule["alert"]] = {**rule, "file": path}
    return found


@functools.cache
def prometheus_tools() -> PrometheusTools:
    """promtool and prometheus (fetched into .tools/prometheus/ by `make
    observability-tools`, or here on first use)."""
    return ensure_prometheus(progress=False)


# Labels every scraped series carries besides its own: the service's (ServiceRegistry adds
# it) and those Prometheus's targets add; `le` is a histogram bucket's.
TARGET_LABELS = {"service", "instance", "pod", "job", "namespace", "le"}


def unknown_grouping_labels(expr: str) -> set[str]:
    """Labels an expression groups by (`sum by (x)`) that none of the metrics it aggregates
    has: such a query still runs, but yields one unnamed series where the author meant one
    per label value."""
    labels_of = {name: set(spec.labels) for spec in ALL_METRICS for name in spec.series_names()}
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    unknown: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.AggregateExpr):
            if node.modifier is not None and node.modifier.type == promql_parser.AggModifierType.By:
                names = metric_names(str(node.expr))
                # A recorded series' labels are its rule's: checked where it is recorded.
                if names <= labels_of.keys():
                    known = set(TARGET_LABELS).union(*(labels_of[n] for n in names))
                    unknown.update(set(node.modifier.labels) - known)
        for child in _children(node) or []:
            walk(child)

    walk(promql_parser.parse(expr))
    return unknown
