"""`mercato chaos` and `mercato soak`: the verdict rules on recorded figures, the scenario
catalogue and its selection."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from mercato.bench.load import OrderRecord
from mercato.chaos import verdict
from mercato.chaos.faults import up_argv
from mercato.chaos.scenarios import SAGA_SERVICES, all_scenarios, select
from mercato.runtime.paths import Home
from mercato.runtime.services import SERVICES
from mercato.soak import failures as soak_failures
from mercato.soak import report_lines as soak_report_lines
from mercato.soak import window_figures

PASSING: dict[str, Any] = {
    "name": "kill-payments", "what": "kill -9 of payments-1",
    "fault": {"killed": "payments-1", "pid": 123},
    "orders": {"sent": 40, "accepted": 38, "terminal": 38, "stuck": 0, "lost": 0,
               "outcomes": {"APPROVED": 30, "REJECTED": 8}},
    "client_errors": {"503": 2}, "recovered_s": 4.2, "canary": {"statuses": {"202": 1}},
    "check": {"violations": []}, "took_s": 20.0,
}


def with_(**changes: Any) -> dict[str, Any]:
    r = copy.deepcopy(PASSING)
    r.update(changes)
    return r


def test_a_clean_scenario_passes_and_503s_are_only_reported() -> None:
    assert verdict.failures(PASSING) == []


@pytest.mark.parametrize("result, expected", [
    (with_(orders={**PASSING["orders"], "stuck": 2}), "2 order(s) stuck"),
    (with_(orders={**PASSING["orders"], "lost": 1}), "1 order(s) lost"),
    (with_(client_errors={"500": 3}), "3: 500 (orders)"),
    (with_(client_errors={"401": 1}), "401 for a valid token (orders)"),
    (with_(canary={"statuses": {"500": 1, "202": 1}}), "500 (recovery canary)"),
    (with_(probes={"catalog read": {"200": 9, "503": 2}}),
     "probe catalog read not 2xx during the fault: 503: 2"),
    (with_(probes={"sign-in": {"401": 1}}), "401 for a valid token (probe sign-in)"),
    (with_(recovered_s=None), "did not recover"),
    (with_(fault_error="payments-1 has no running process"), "could not be injected"),
    (with_(fault={"not_dead_lettered": ["unknown version"]}),
     "not dead-lettered: unknown version"),
    (with_(check={"violations": [{"invariant": "at most one capture per order",
                                  "subject": "o-1", "detail": "2 captures"}]}),
     "mercato check: 1 new violation(s): at most one capture per order (o-1)"),
])
def test_each_rule_fires_on_its_own(result: dict[str, Any], expected: str) -> None:
    why = verdict.failures(result)
    assert len(why) == 1 and expected in why[0], why


def test_a_skipped_scenario_neither_passes_nor_fails_but_shows() -> None:
    skipped = {"name": "kill-second-orders", "what": "x", "skipped": "needs --scale"}
    assert verdict.failures(skipped) == []
    text = "\n".join(verdict.report_lines({
        "at": "now", "config": {"rate": 5.0}, "took_s": 30, "machine": "2 cores",
        "scenarios": [PASSING, skipped, with_(name="kill-nats", client_errors={"500": 1})]}))
    assert "kill-second-orders: x\n  SKIPPED: needs --scale" in text
    assert "verdict: FAIL: kill-nats (1 skipped: kill-second-orders)" in text
    assert "40 / 38 / 38 / 0 / 0" in text and "503: 2" in text


def test_status_keys_tell_answers_from_connection_errors() -> None:
    assert verdict.status_key(503, None) == "503"
    assert verdict.status_key(None, "ClientConnectorError: refused") == \
        "connection error (ClientConnectorError)"


def test_the_catalogue_covers_every_fault_the_issue_names() -> None:
    names = {s.name for s in all_scenarios()}
    assert {f"kill-{s}" for s in SERVICES} <= names
    assert {f"kill-second-{s}" for s in SAGA_SERVICES} <= names
    assert {"kill-payments-provider", "kill-mailsink", "kill-postgres", "kill-nats",
            "nats-outage", "kill-envoy", "kill-supervisor", "sigstop-payments", "down-up",
            "poison-messages", "latency-orders-postgres", "resets-orders-nats"} <= names
    probing = {s.name for s in all_scenarios() if s.probes}
    assert {"kill-nats", "nats-outage"} <= probing
    assert len(names) == len(all_scenarios())


def test_selection_short_set_all_and_by_name() -> None:
    short = [s.name for s in select(None, False)]
    assert short == ["kill-payments", "kill-nats", "resets-orders-postgres",
                     "kill-second-orders"]
    assert len(select(None, True)) == len(all_scenarios())
    assert [s.name for s in select(["kill-nats", "kill-orders"], False)] == [
        "kill-orders", "kill-nats"]  # the catalogue's order
    with pytest.raises(ValueError, match=r"unknown scenario.*nope"):
        select(["nope"], False)


def test_scenarios_say_what_they_need_from_the_platform() -> None:
    by = {s.name: s for s in all_scenarios()}
    plain = {"processes": {"orders-1": {}, "payments-1": {}}}
    assert by["kill-second-orders"].missing(plain) == "needs mercato up --scale orders=2"
    assert by["resets-orders-postgres"].missing(plain) == "needs mercato up --fault-proxy"
    assert by["kill-payments"].missing(plain) is None
    proxied = {"fault_proxy": {"routes": {"orders->postgres": {}}}}
    assert by["resets-orders-postgres"].missing(proxied) is None


def test_restarting_the_platform_repeats_its_scale_and_fault_proxy(tmp_path: Any) -> None:
    argv = up_argv(Home(tmp_path), {"options": {"scale": ["orders=2"], "fault_proxy": True}})
    assert argv[2:] == ["mercato.cli", "up", "--detach", "--home", str(tmp_path),
                        "--scale", "orders=2", "--fault-proxy"]


# -- soak -----------------------------------------------------------------------------------

def window(i: int, p99: float, mem: dict[str, tuple[int, float]] | None = None,
           outbox: float = 0.2) -> dict[str, Any]:
    return {"window": i, "sent": 60, "ttt_p50_ms": p99 / 3, "ttt_p99_ms": p99,
            "memory": {n: {"pid": pid, "mb": mb} for n, (pid, mb) in (mem or {
                "orders-1": (10, 100.0)}).items()},
            "outbox_oldest_s": outbox, "consumer_lag": 3, "dead_letters": 0}


def test_a_steady_soak_passes() -> None:
    steady = [window(1, 800), window(2, 900), window(3, 1150,
                                                     {"orders-1": (10, 109.0)})]
    assert soak_failures(steady) == []


def test_p99_drift_of_the_last_window_over_half_fails() -> None:
    why = soak_failures([window(1, 800), window(2, 900), window(3, 1201)])
    assert len(why) == 1 and "p99 drifted from 800 ms (window 1) to 1201 ms" in why[0]


def test_memory_growth_after_the_warm_up_fails_unless_restarted() -> None:
    grown = [window(1, 800), window(2, 800, {"orders-1": (10, 111.0)})]
    why = soak_failures(grown)
    assert len(why) == 1 and "orders-1 grew from 100.0 MB to 111.0 MB" in why[0]
    restarted = [window(1, 800), window(2, 800, {"orders-1": (11, 150.0)})]
    assert soak_failures(restarted) == []


def test_an_old_outbox_row_in_any_window_fails() -> None:
    why = soak_failures([window(1, 800), window(2, 800, outbox=5.5), window(3, 800)])
    assert why == ["window 2: an outbox row waited 5.5 s (bound 5 s)"]


def test_stuck_orders_violations_and_no_windows_fail() -> None:
    assert soak_failures([window(1, 800)], stuck=2) == [
        "2 order(s) not terminal after the drain"]
    assert soak_failures([window(1, 800)], violations=[
        {"invariant": "order terminal", "subject": "o-1", "detail": ""}]) == [
        "mercato check: order terminal: o-1"]
    assert soak_failures([]) == ["no window was measured"]


def test_one_window_judges_nothing_but_the_outbox() -> None:
    assert soak_failures([window(1, 99999)]) == []


def test_window_figures_split_orders_by_when_they_were_sent() -> None:
    def rec(sent: float, ttt: float) -> OrderRecord:
        return OrderRecord(index=0, declined_card=False, sent_at=sent, accepted_at=sent,
                           http_status=202, order_id=str(sent), terminal="APPROVED",
                           terminal_at=sent + ttt)

    records = [rec(100 + i, 0.5) for i in range(10)] + [rec(110 + i, 2.0) for i in range(10)]
    w = window_figures(records, 100.0, 10.0, 3)
    assert [x["sent"] for x in w] == [10, 10, 0]
    assert w[0]["ttt_p99_ms"] == pytest.approx(500) and w[1]["ttt_p99_ms"] == pytest.approx(2000)
    assert w[2]["ttt_p99_ms"] is None


def test_the_soak_report_shows_each_window_and_the_verdict() -> None:
    windows = [window(1, 800), window(2, 1300)]
    text = "\n".join(soak_report_lines({
        "at": "now", "config": {"window_s": 60}, "rate": 8.0, "machine": "2 cores",
        "saturation": {"completed_per_s": 16.0, "offered_per_s": 40},
        "summary": {"sent": 120, "accepted": 120, "completed": 120,
                    "http_statuses": {"202": 120}},
        "windows": windows, "failures": soak_failures(windows)}))
    assert "saturation measured first: 16.0 orders/s" in text
    assert "     2    60      433     1300" in text
    assert "verdict: FAIL" in text and "p99 drifted" in text


def test_the_exit_code_and_the_saved_reports_follow_the_verdict(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from mercato.chaos import run as chaos_run

    outcome: list[dict[str, Any]] = [PASSING]

    async def scripted(*_args: Any, **_kwargs: Any) -> list[dict[str, Any]]:
        return copy.deepcopy(outcome)

    monkeypatch.setattr(chaos_run, "_chaos", scripted)
    report = tmp_path / "chaos.json"
    assert chaos_run.run_chaos(Home(tmp_path), [], report_file=report) == 0
    assert "verdict: pass" in report.with_suffix(".txt").read_text()
    outcome[:] = [PASSING, with_(name="kill-nats", orders={**PASSING["orders"], "lost": 1})]
    assert chaos_run.run_chaos(Home(tmp_path), [], report_file=report) == 1
    saved = __import__("json").loads(report.read_text())
    assert [s["name"] for s in saved["scenarios"]] == ["kill-payments", "kill-nats"]
    assert "verdict: FAIL: kill-nats" in report.with_suffix(".txt").read_text()


def test_a_scenario_answers_for_the_violations_it_brought_and_the_baseline_for_its_own(
        ) -> None:
    old = {"invariant": "the mail sink got one email per order and kind", "subject": "o-1",
           "detail": "2 emails"}
    left_over = with_(check={"violations": [old], "new": []})
    assert verdict.failures(left_over) == []
    text = "\n".join(verdict.report_lines({
        "at": "now", "config": {"rate": 5.0}, "took_s": 30, "machine": "2 cores",
        "scenarios": [{"name": "before the run", "what": "check", "baseline": True,
                       "check": {"violations": [], "new": []}}, left_over]}))
    assert "(left by an earlier scenario)" in text and "1 scenario(s)" in text
    assert verdict.failures(with_(check={"violations": [old], "new": [old]}))
    dirty = {"name": "before the run", "what": "check", "baseline": True,
             "check": {"violations": [old], "new": [old]}}
    assert verdict.failures(dirty) == [
        "mercato check before the run: 1 violation(s): the mail sink got one email per "
        "order and kind (o-1)"]


def test_a_process_memory_leaves_out_the_platform_processes_below_it() -> None:
    """The supervisor is the parent of every process: its figure must not be theirs too."""
    import subprocess
    import sys

    from mercato.soak import _memory

    child = subprocess.Popen([sys.executable, "-c",
                              "b = bytearray(200_000_000); import time; time.sleep(30)"])
    try:
        import os
        import time

        import psutil
        deadline = time.monotonic() + 20
        while psutil.Process(child.pid).memory_info().rss < 150e6:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        me = os.getpid()
        assert _memory(me, set(), private=False) > _memory(me, {child.pid}, private=False) \
            + 150
        assert _memory(child.pid, set(), private=True) > 150
    finally:
        child.kill()
        child.wait()
