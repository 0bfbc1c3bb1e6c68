"""The Grafana dashboards under deploy/observability/grafana/dashboards: each a valid
dashboard model Grafana imports as it is, one per service plus the overview, messaging and
sagas, and every panel's query valid PromQL naming only metrics the platform exports. (That
the files are what `mercato deploy render` writes today is tests/deploy's check.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from mercato.deploy.units import k8s_name
from mercato.runtime.services import SERVICES
from platform_metrics import DASHBOARDS, exported_series, metric_names, unknown_grouping_labels

PANEL_TYPES = {"row", "timeseries", "stat", "table"}
UID = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # a collapsed row keeps its panels inside
    return found


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    found = [(f"panel {p['title']!r}", t["expr"]) for p in panels(board)
             for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(<selector>, label): the selector is PromQL.
            inner = re.fullmatch(r"label_values\((.+), *\w+\)", variable["definition"])
            assert inner, f"variable {variable['name']}: {variable['definition']}"
            found.append((f"variable {variable['name']}", inner.group(1)))
    return found


def test_there_is_an_overview_messaging_sagas_and_one_dashboard_per_service() -> None:
    names = {p.name for p in dashboard_files()}
    expected = {"overview.json", "messaging.json", "sagas.json"} | {
        f"service-{k8s_name(s)}.json" for s in SERVICES}
    assert names == expected


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_each_file_is_a_grafana_dashboard_model(path: Path) -> None:
    board = load(path)
    assert UID.match(board["uid"]), board["uid"]
    assert board["title"].startswith("mercato: ")
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert board["time"] == {"from": "now-1h", "to": "now"}
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    occupied: set[tuple[int, int]] = set()
    for panel in panels(board):
        assert panel["type"] in PANEL_TYPES, panel["type"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                 for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & occupied, f"{panel['title']!r} overlaps another panel"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"] and target["expr"]
        # Every variable a query uses is defined on the dashboard.
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
            assert used <= set(variables), f"{panel['title']!r} uses undefined {used}"


def test_the_dashboards_uids_are_unique() -> None:
    uids = [load(p)["uid"] for p in dashboard_files()]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_every_query_is_promql_naming_only_metrics_the_platform_exports(path: Path) -> None:
    exported = exported_series()
    for where, expr in queries(load(path)):
        try:
            names = metric_names(expr)
        except ValueError as exc:
            raise AssertionError(f"{path.name} {where}: not PromQL: {exc}\n{expr}") from exc
        assert names, f"{path.name} {where} reads no metric"
        unknown = names - exported
        assert not unknown, f"{path.name} {where}: {unknown} is exported by nothing"
        grouped = unknown_grouping_labels(expr)
        assert not grouped, f"{path.name} {where}: groups by {grouped}, labels it lacks"


def test_a_service_dashboard_shows_what_the_service_has() -> None:
    """The template follows the deploy facts: consumers, outbox, calls and sagas panels only
    where the service has them."""
    def exprs(service: str) -> str:
        board = load(DASHBOARDS / f"service-{k8s_name(service)}.json")
        return "\n".join(expr for _, expr in queries(board))

    assert "consumer_lag_messages" in exprs("inventory")
    assert "outbox_backlog" in exprs("inventory")
    assert "consumer_lag_messages" not in exprs("identity")
    assert "outbox_backlog" not in exprs("notifications")
    assert "http_client_breaker_state" in exprs("cart")
    assert "http_client_breaker_state" not in exprs("catalog")
    assert "saga_running" in exprs("orders") and "saga_running" not in exprs("payments")
    for service in SERVICES:
        assert f'service="{service}"' in exprs(service)


def test_a_query_naming_an_unknown_metric_is_caught() -> None:
    exported = exported_series()
    assert metric_names("sum(rate(http_requests_totl[5m]))") - exported == {
        "http_requests_totl"}
