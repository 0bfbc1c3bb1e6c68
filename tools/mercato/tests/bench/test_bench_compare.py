"""`mercato bench orders --save-baseline / --compare` and `mercato bench compare`: a run's
headline figures, the medians of several runs per build, the ratios, the per-process CPU,
and clear errors for files that are not runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mercato.bench.baseline import (
    KIND,
    BaselineError,
    baseline_of,
    compare,
    figures_of,
    load_run,
    platform_cpu_ms,
)
from mercato.cli import app
from typer.testing import CliRunner


def _report(cpu: dict[str, float], *, ttt_p99: float = 800.0, completed_per_s: float = 12.0,
            rate: float = 12.0, commit: str = "abc1234567", violations: int = 0) -> dict:
    """A bench orders report as `run_orders_bench` writes it (the parts the figures use)."""
    return {
        "benchmark": "orders", "target": "services", "at": "2026-12-02T17:00:00+00:00",
        "config": {"rate": rate, "duration_s": 30.0, "decline_share": 0.2},
        "machine": {"cpus": 2, "node": "box"}, "commit": commit, "dirty": False,
        "summary": {"completed": 360, "completed_per_s": completed_per_s,
                    "ttt_p50_ms": ttt_p99 / 4, "ttt_p99_ms": ttt_p99, "accept_p50_ms": 20.0},
        "cpu_s_per_order": {k: v / 1000 for k, v in cpu.items()},
        "cpu_s_per_order_above_idle": {k: v / 2000 for k, v in cpu.items()},
        "check": {"violations": [{"invariant": "x"}] * violations},
        "work_per_order": {"transactions": 25.0},
    }


def test_the_platform_total_leaves_the_bench_client_out() -> None:
    assert platform_cpu_ms({"orders": 0.030, "postgres": 0.020, "bench client": 0.5}) == 50.0
    figures = figures_of(_report({"orders": 30.0, "nats": 10.0, "bench client": 2.0}))
    assert figures["cpu_ms_per_order"] == 40.0
    assert figures["cpu_ms_per_order_above_idle"] == 20.0
    assert figures["cpu_ms_per_order_by_process"] == {"orders": 30.0, "nats": 10.0}
    assert figures["ttt_p99_ms"] == 800.0 and figures["clean_check"] is True


def test_medians_of_each_side_and_the_ratio_after_over_before() -> None:
    before = [baseline_of(_report({"orders": ms, "nats": 10.0}, ttt_p99=p99),
                          commit={"commit": "old", "dirty": False})
              for ms, p99 in ((90.0, 900.0), (110.0, 1100.0), (100.0, 5000.0))]
    after = [baseline_of(_report({"orders": ms, "nats": 5.0}, ttt_p99=400.0,
                                 completed_per_s=12.5),
                         commit={"commit": "new", "dirty": True})
             for ms in (45.0, 55.0)]
    result = compare(before, after)
    rows = {r["measure"]: r for r in result["figures"]}
    cpu = rows["cpu_ms_per_order"]
    assert cpu["before"] == 110.0  # medians: (100, 120, 110) -> 110, not a mean
    assert cpu["after"] == 55.0 and cpu["ratio"] == pytest.approx(0.5)
    assert cpu["before_runs"] == [100.0, 120.0, 110.0]
    assert rows["ttt_p99_ms"]["before"] == 1100.0 and rows["ttt_p99_ms"]["ratio"] == \
        pytest.approx(400 / 1100)
    assert rows["completed_per_s"]["ratio"] == pytest.approx(12.5 / 12.0)
    procs = {r["process"]: r for r in result["by_process"]}
    assert procs["orders"]["before"] == 100.0 and procs["orders"]["after"] == 50.0
    assert procs["nats"]["ratio"] == pytest.approx(0.5)
    assert [r["process"] for r in result["by_process"]] == ["orders", "nats"]
    assert result["before"][0]["commit"] == "old" and result["after"][0]["dirty"] is True
    assert result["notes"] == []


def test_a_process_missing_on_one_side_counts_as_zero_and_differences_are_noted() -> None:
    before = [baseline_of(_report({"orders": 50.0, "mailsink": 6.0}, rate=10.0),
                          commit={"commit": "a", "dirty": False})]
    after = [baseline_of(_report({"orders": 50.0}, violations=1),
                         commit={"commit": "b", "dirty": False})]
    result = compare(before, after)
    procs = {r["process"]: r for r in result["by_process"]}
    assert procs["mailsink"]["after"] == 0.0 and procs["mailsink"]["ratio"] == 0.0
    assert any("rate differs" in n for n in result["notes"])
    assert any("check was not clean" in n for n in result["notes"])


def test_a_saved_baseline_and_a_full_report_load_alike(tmp_path: Path) -> None:
    report = _report({"orders": 30.0, "bench client": 1.0})
    (tmp_path / "report.json").write_text(json.dumps(report))
    saved = baseline_of(report, commit={"commit": "abc1234567", "dirty": False})
    (tmp_path / "base.json").write_text(json.dumps(saved))
    a, b = load_run(tmp_path / "report.json"), load_run(tmp_path / "base.json")
    assert a["kind"] == b["kind"] == KIND
    assert a["figures"] == b["figures"] and a["commit"] == b["commit"] == "abc1234567"
    assert a["rate"] == 12.0 and a["machine"]["node"] == "box"


@pytest.mark.parametrize(("content", "says"), [
    (None, "no such file"),
    ("{not json", "not a JSON report"),
    (json.dumps([1, 2]), "not a bench orders report"),
    (json.dumps({"benchmark": "gateway"}), "not a bench orders report"),
    (json.dumps({"kind": KIND, "version": 99, "figures": {}}), "unknown version"),
])
def test_files_that_are_not_runs_are_refused_clearly(tmp_path: Path, content: str | None,
                                                     says: str) -> None:
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BaselineError, match=says):
        load_run(path)


def _save(path: Path, doc: dict[str, Any]) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def test_bench_compare_prints_both_sides_and_writes_the_comparison(tmp_path: Path) -> None:
    runner = CliRunner()
    b1 = _save(tmp_path / "b1.json", _report({"orders": 100.0}, commit="before1234"))
    b2 = _save(tmp_path / "b2.json", _report({"orders": 120.0}, commit="before1234"))
    a1 = _save(tmp_path / "a1.json", _report({"orders": 55.0}, commit="after12345"))
    out = tmp_path / "cmp.json"
    result = runner.invoke(app, ["bench", "compare", "--before", b1, "--before", b2,
                                 "--after", a1, "--report", str(out)],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "before1234" in result.output and "after12345" in result.output
    assert "0.50" in result.output  # 55 against the median 110
    assert "CPU ms per completed order, per process" in result.output
    saved = json.loads(out.read_text())
    assert saved["figures"][0]["ratio"] == pytest.approx(0.5)


def test_bench_compare_refuses_a_file_that_is_not_a_run(tmp_path: Path) -> None:
    runner = CliRunner()
    good = _save(tmp_path / "good.json", _report({"orders": 50.0}))
    bad = _save(tmp_path / "bad.json", {"hello": 1})
    result = runner.invoke(app, ["bench", "compare", "--before", good, "--after", bad],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "not a bench orders report" in result.output
    assert "Traceback" not in result.output
