"""`mercato chaos` (its short scenario set) and a short `mercato soak`, run as a user runs them,
against a platform of their own started with the fault proxy and a second orders instance
(what the short set needs: its scenarios would otherwise be skipped)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from edge_helpers import Platform, mercato, running_platform, scratch_home
from mercato.chaos.scenarios import select
from mercato.chaos.verdict import failures
from mercato.soak import failures as soak_failures

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


@pytest.fixture(scope="module")
def chaos_platform() -> Iterator[Platform]:
    with running_platform(scratch_home("mercato-chaos-"), "--fault-proxy", "--scale",
                          "orders=2") as p:
        yield p


@pytest.mark.timeout(900)  # the chaos run bounds itself; a busy machine stretches it
def test_the_short_chaos_set_passes_with_every_order_terminal_and_a_clean_check(
        chaos_platform: Platform, tmp_path: Path) -> None:
    report = tmp_path / "chaos.json"
    res = mercato(chaos_platform.home, "chaos", "--rate", "4", "--report", str(report),
                  timeout=900, check=False)
    assert res.returncode == 0, f"{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    data = json.loads(report.read_text())
    baseline, *scenarios = data["scenarios"]
    assert baseline["baseline"] and baseline["check"]["violations"] == []
    assert [s["name"] for s in scenarios] == [s.name for s in select(None, False)]
    for s in scenarios:
        assert not s.get("skipped"), s
        assert failures(s) == [], s
        assert s["orders"]["accepted"] > 0
        assert s["orders"]["terminal"] == s["orders"]["accepted"]
        assert s["check"]["violations"] == []
        assert s["recovered_s"] is not None
    kill_nats = next(s for s in scenarios if s["name"] == "kill-nats")
    # Probed while NATS was down and coming back: every answer 2xx.
    assert set(kill_nats["probes"]) == {"catalog read", "sign-in", "order placement"}
    for statuses in kill_nats["probes"].values():
        assert statuses and all(k.startswith("2") for k in statuses), kill_nats["probes"]
    resets = next(s for s in scenarios if s["name"] == "resets-orders-postgres")
    assert resets["fault"]["resets"] >= 4
    routes = chaos_platform.state()["fault_proxy"]["routes"]
    assert routes["orders->postgres"]["resets"] >= 4  # the proxy really cut connections
    text = report.with_suffix(".txt").read_text()
    assert "verdict: pass" in text and "kill-second-orders" in text
    assert "verdict: pass" in res.stdout


@pytest.mark.timeout(600)
def test_a_short_soak_reports_every_window_and_its_rules_fire_on_its_figures(
        chaos_platform: Platform, tmp_path: Path) -> None:
    report = tmp_path / "soak.json"
    res = mercato(chaos_platform.home, "soak", "--minutes", "0.5", "--window-seconds", "10",
                  "--rate", "3", "--customers", "6", "--report", str(report), timeout=600,
                  check=False)
    assert res.returncode in (0, 1), f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    data = json.loads(report.read_text())
    windows = data["windows"]
    assert [w["window"] for w in windows] == [1, 2, 3]
    for w in windows:
        assert w["sent"] > 0 and w["ttt_p99_ms"] is not None
        assert w["ttt_p50_ms"] <= w["ttt_p99_ms"]
        assert {"orders-1", "orders-2", "postgres", "nats", "envoy", "supervisor"} <= set(
            w["memory"])
        assert all(m["mb"] > 0 for m in w["memory"].values())
        assert w["outbox_oldest_s"] is not None and w["consumer_lag"] is not None
        assert w["dead_letters"] is not None
    assert data["summary"]["not_terminal"] == 0 and data["check"]["violations"] == []
    # The verdict is the rules applied to these figures, and the exit code follows it.
    assert data["failures"] == soak_failures(windows)
    assert res.returncode == (1 if data["failures"] else 0)
    assert "verdict:" in res.stdout and "window" in res.stdout

    # The rules on the recorded figures: each planted drift fires its rule.
    drifted = copy.deepcopy(windows)
    drifted[-1]["ttt_p99_ms"] = drifted[0]["ttt_p99_ms"] * 1.6
    assert any("p99 drifted" in w for w in soak_failures(drifted))
    grown = copy.deepcopy(windows)
    grown[-1]["memory"]["orders-1"] = {**grown[0]["memory"]["orders-1"],
                                       "mb": grown[0]["memory"]["orders-1"]["mb"] * 1.11}
    assert any("orders-1 grew" in w for w in soak_failures(grown))
    stale = copy.deepcopy(windows)
    stale[1]["outbox_oldest_s"] = 5.1
    assert any("outbox row waited 5.1 s" in w for w in soak_failures(stale))
