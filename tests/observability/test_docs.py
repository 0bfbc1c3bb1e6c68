"""docs/observability.md lists what the code exports and alerts on: its metric table is the
catalogue's names and types, its alert table the rules' alerts, its list of outside metrics
the dashboards' EXTERNAL_METRICS."""

from __future__ import annotations

import re

from mercato.deploy.dashboards import EXTERNAL_METRICS
from platform_metrics import REPO, SERVICE_METRICS, alerts

GUIDE = REPO / "docs" / "observability.md"


def table_rows(first_column: str) -> dict[str, list[str]]:
    """Rows of the guide's table whose header starts with ``first_column``, by first cell."""
    text = GUIDE.read_text()
    start = text.index(f"| {first_column} |")
    rows: dict[str, list[str]] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_the_metric_table_is_the_catalogue() -> None:
    rows = table_rows("metric")
    assert set(rows) == {s.name for s in SERVICE_METRICS}
    for spec in SERVICE_METRICS:
        kind, labels = rows[spec.name][0], rows[spec.name][1]
        assert kind == spec.kind, spec.name
        assert [x.strip() for x in labels.split(",")] == ["service", *spec.labels], spec.name


def test_the_alert_table_is_the_rules() -> None:
    rows = table_rows("alert")
    assert set(rows) == set(alerts())
    for name, alert in alerts().items():
        assert rows[name][0] == alert["labels"]["severity"], name


def test_the_outside_metrics_are_named() -> None:
    text = GUIDE.read_text()
    for spec in EXTERNAL_METRICS:
        assert re.search(rf"`{spec.name}`", text), spec.name
