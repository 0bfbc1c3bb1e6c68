"""The capacity model: its arithmetic, and docs/performance.md's table being exactly what
``mercato bench capacity --markdown`` derives from the runs kept in bench/reference."""

from __future__ import annotations

from pathlib import Path

import pytest
from mercato.bench.capacity import REST, markdown, model
from mercato.runtime.services import repo_root
from typer.testing import CliRunner

REFERENCE = sorted((repo_root() / "bench" / "reference" / "adr-0055" / "all-12ps-2").glob(
    "after-*.report.json"))


def _run(above: dict[str, float] | None, total: dict[str, float]) -> dict[str, object]:
    figures: dict[str, object] = {"cpu_ms_per_order_by_process": total}
    if above is not None:
        figures["cpu_ms_per_order_above_idle_by_process"] = above
    return {"figures": figures}


def test_cores_are_the_median_cost_times_the_rate_at_the_utilisation() -> None:
    runs = [_run({"orders": 20.0, "nats": 10.0, "cart": 0.2}, {"orders": 30.0}),
            _run({"orders": 40.0, "nats": 14.0, "cart": 0.4}, {"orders": 50.0}),
            _run({"orders": 30.0, "nats": 12.0, "cart": 0.3}, {"orders": 40.0})]
    m = model(runs, rates=(100, 1000), utilisation=0.5)
    assert m.basis == "above idle"
    assert [(r.group, r.ms_per_order) for r in m.rows] == [
        ("orders", 30.0), ("nats", 12.0), (REST, 0.3)]
    assert m.rows[0].cores == pytest.approx((6.0, 60.0))  # 30 ms x 100/s = 3 cores, at 50 %
    assert m.total.ms_per_order == pytest.approx(42.3)
    assert m.rest == ["cart"]


def test_runs_without_costs_above_idle_fall_back_to_the_totals() -> None:
    m = model([_run(None, {"orders": 30.0}), _run({"orders": 1.0}, {"orders": 50.0})])
    assert m.basis == "total" and m.rows[0].ms_per_order == 40.0


def test_the_performance_page_shows_the_model_of_the_reference_runs() -> None:
    assert len(REFERENCE) == 5, \
        "bench/reference/adr-0055/all-12ps-2 holds the runs the page is from"
    from mercato.bench.capacity import load_model

    table = markdown(load_model(REFERENCE))
    page = (repo_root() / "docs" / "performance.md").read_text()
    assert table in page, ("docs/performance.md's capacity table is not the model of the "
                           "reference runs; paste: mercato bench capacity --markdown "
                           "bench/reference/adr-0055/all-12ps-2/after-*.report.json\n"
                           + table)


def test_the_command_prints_the_model_and_refuses_a_file_that_is_no_run(
        tmp_path: Path) -> None:
    from mercato.cli import app

    runner = CliRunner()
    shown = runner.invoke(app, ["bench", "capacity", "--rate", "50", *map(str, REFERENCE)])
    assert shown.exit_code == 0, shown.output
    assert "cores at 50/s" in shown.output and "orders" in shown.output
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    refused = runner.invoke(app, ["bench", "capacity", str(bad)])
    assert refused.exit_code == 2
    assert "not a bench orders report" in refused.output and "Traceback" not in refused.output
