"""The Prometheus rules under deploy/observability/prometheus: valid for Prometheus itself
(``promtool check rules``), every alert unit-tested firing and not firing (``promtool test
rules``), every alert with a severity, a summary, a description and a runbook that exists in
docs/operations.md, and every expression reading only metrics the platform exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from platform_metrics import (
    OPERATIONS,
    alerts,
    exported_series,
    load,
    metric_names,
    prometheus_tools,
    rule_files,
    rule_test_files,
    rules,
    unknown_grouping_labels,
)

RUNBOOK_BASE = "https://github.com/mercato-shop/mercato/blob/main/docs/operations.md#"
SEVERITIES = {"critical", "warning"}


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(prometheus_tools().promtool), *map(str, args)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_prometheus_accepts_every_rule_file() -> None:
    assert rule_files(), "no rule files found"
    done = promtool("check", "rules", *rule_files())
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_passes_its_unit_tests() -> None:
    done = promtool("test", "rules", *rule_test_files())
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(rule_test_files())


def test_a_broken_expectation_fails_the_unit_tests(tmp_path: Path) -> None:
    """promtool really compares: the same tests against a rule whose threshold moved fail."""
    rules_dir, tests_dir = tmp_path / "rules", tmp_path / "tests"
    rules_dir.mkdir()
    tests_dir.mkdir()
    for path in rule_files():
        text = path.read_text()
        if path.name == "messaging.rules.yaml":
            text = text.replace("(consumer_lag_messages) > 1000", "(consumer_lag_messages) > 2000")
        (rules_dir / path.name).write_text(text)
    for path in rule_test_files():
        (tests_dir / path.name).write_text(path.read_text())
    done = promtool("test", "rules", tests_dir / "messaging.test.yaml")
    assert done.returncode != 0 and "ConsumerLagHigh" in done.stdout + done.stderr


def test_each_rule_file_has_a_test_file_of_its_own() -> None:
    for path in rule_files():
        test_file = path.parent.parent / "tests" / path.name.replace(".rules.", ".test.")
        assert test_file.is_file(), f"{path.name} has no {test_file.name}"
        assert load(test_file)["rule_files"] == [f"../rules/{path.name}"]
    assert len(rule_test_files()) == len(rule_files())


def test_every_alert_is_tested_both_firing_and_not_firing() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in rule_test_files():
        for case in load(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    defined = set(alerts())
    assert defined, "no alerts found"
    assert defined - fired == set(), "alerts never tested firing"
    assert defined - quiet == set(), "alerts never tested staying quiet"
    assert (fired | quiet) - defined == set(), "tests of alerts that do not exist"


@pytest.mark.parametrize("name", sorted(alerts()))
def test_every_alert_says_how_bad_what_and_where_its_runbook_is(name: str) -> None:
    alert = alerts()[name]
    assert alert["labels"]["severity"] in SEVERITIES
    annotations = alert["annotations"]
    assert annotations["summary"] and annotations["description"]
    assert annotations["runbook_url"] == RUNBOOK_BASE + name.lower()


def _alert_anchors() -> set[str]:
    """The anchors GitHub makes for the headings under docs/operations.md's ## Alerts."""
    text = OPERATIONS.read_text()
    assert "\n## Alerts\n" in text, "docs/operations.md has no ## Alerts section"
    section = text.split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    return {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^### (.+)$", section, re.M)}


def test_every_alert_has_its_runbook_in_the_operations_guide() -> None:
    anchors = _alert_anchors()
    missing = {name for name in alerts() if name.lower() not in anchors}
    assert not missing, f"docs/operations.md ## Alerts lacks a ### heading for {missing}"
    assert anchors <= {name.lower() for name in alerts()}, "a runbook for no alert"


def test_rules_read_only_metrics_the_platform_exports() -> None:
    exported = exported_series()
    recorded = {rule["record"] for path in rule_files() for rule in rules(path)
                if "record" in rule}
    for path in rule_files():
        for rule in rules(path):
            unknown = metric_names(rule["expr"]) - exported - recorded
            assert not unknown, f"{path.name} {rule.get('alert') or rule.get('record')}: " \
                                f"{unknown} is exported by nothing"
            grouped = unknown_grouping_labels(rule["expr"])
            assert not grouped, f"{path.name} {rule.get('alert') or rule.get('record')}: " \
                                f"groups by {grouped}, labels its metrics lack"


def test_recorded_series_follow_the_level_metric_operation_convention() -> None:
    for path in rule_files():
        for rule in rules(path):
            if "record" in rule:
                level, metric, operation = rule["record"].split(":")
                assert level and metric and operation, rule["record"]


def test_the_metric_name_reader_sees_every_selector_and_refuses_what_is_not_promql() -> None:
    assert metric_names('sum by (s) (rate(a_total{x="1"}[5m])) / on (s) b '
                        "unless max_over_time(c[5m:1m])") == {"a_total", "b", "c"}
    assert metric_names("histogram_quantile(0.9, sum by (le) (rate(h_bucket[$__rate_interval])))"
                        ) == {"h_bucket"}
    with pytest.raises(ValueError):
        metric_names("sum(rate(a_total[5m])")
    with pytest.raises(ValueError):
        metric_names('{job="x"}')
