"""The console's metric panels (mercato.console.prom.PANELS), like the dashboards: valid
PromQL naming only metrics the platform exports, and grouping only by labels those metrics
have (a panel grouped by a label nobody sets draws one unnamed line)."""

from __future__ import annotations

import pytest
from mercato.console.prom import PANELS
from platform_metrics import exported_series, metric_names, unknown_grouping_labels


@pytest.mark.parametrize("panel", PANELS, ids=lambda p: p[0])
def test_each_panel_reads_exported_metrics_by_their_own_labels(
        panel: tuple[str, str, str, str]) -> None:
    pid, _, _, query = panel
    names = metric_names(query)
    assert names and not names - exported_series(), (pid, names - exported_series())
    assert not unknown_grouping_labels(query), (pid, unknown_grouping_labels(query))


def test_a_grouping_label_the_metric_lacks_is_caught() -> None:
    assert unknown_grouping_labels(
        "sum by (outcome) (rate(saga_finished_total[1m]))") == {"outcome"}
    assert unknown_grouping_labels("sum by (status) (rate(saga_finished_total[1m]))") == set()
    assert unknown_grouping_labels(
        "histogram_quantile(0.99, sum by (service, le) "
        "(rate(http_request_duration_seconds_bucket[1m])))") == set()
