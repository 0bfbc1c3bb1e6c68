"""``mercato bench orders --target legacy|both``: how the monolith's answers become order
records, and the side-by-side table with its ratio."""

from __future__ import annotations

import json

import pytest
from mercato.bench.legacy import compare, read_legacy, record_outcome
from mercato.bench.load import OrderRecord
from mercato.bench.measure import summarise
from mercato.bench.shop import BenchError


def answered(i: int, status: int, body: dict[str, object] | None, sent: float,
             answer: float) -> OrderRecord:
    r = OrderRecord(index=i, declined_card=status == 402, sent_at=sent)
    r.accepted_at, r.http_status = answer, status
    record_outcome(r, status, json.dumps(body or {}).encode(), f"key-{i}")
    return r


def test_the_monolith_answer_is_the_terminal_state() -> None:
    paid = answered(0, 201, {"id": 17}, 100.0, 100.050)
    declined = answered(1, 402, {"title": "Payment declined"}, 100.2, 100.240)
    sold_out = answered(2, 409, {"title": "Out of stock"}, 100.4, 100.41)
    assert (paid.order_id, paid.terminal, paid.terminal_at) == ("17", "APPROVED", 100.050)
    assert declined.terminal == "REJECTED" and declined.order_id == "declined:key-1"
    assert sold_out.terminal is None and "Out of stock" in (sold_out.error or "")
    s = summarise([paid, declined, sold_out], accepted_statuses=(201, 402))
    assert s["completed"] == 2 and s["not_terminal"] == 0
    assert s["outcomes"] == {"APPROVED": 1, "REJECTED": 1}
    assert s["unexpected_outcomes"] == 0
    assert s["ttt_p50_ms"] == pytest.approx(40.0) and s["ttt_p99_ms"] == pytest.approx(50.0)
    # The services' summary is unchanged: only 202 takes an order in.
    assert summarise([paid])["accepted"] == 0


def test_side_by_side_rows_and_ratios() -> None:
    services = {"summary": {"completed_per_s": 20.0, "ttt_p50_ms": 300.0, "ttt_p99_ms": 900.0},
                "cpu_s_per_order": {"orders": 0.010, "postgres": 0.020}}
    legacy = {"summary": {"completed_per_s": 40.0, "ttt_p50_ms": 30.0, "ttt_p99_ms": None},
              "cpu_s_per_order": {"legacy": 0.005, "postgres": 0.005}}
    rows = {m: (s, lg, r) for m, s, lg, r in compare(services, legacy)}
    assert rows["completed orders/s"] == (20.0, 40.0, 0.5)
    assert rows["time to terminal p50 ms"] == (300.0, 30.0, 10.0)
    assert rows["time to terminal p99 ms"] == (900.0, None, None)
    assert rows["CPU ms per order"] == (30.0, 10.0, 3.0)
    only_legacy = {m: (s, r) for m, s, _lg, r in compare(None, legacy)}
    assert only_legacy["completed orders/s"] == (None, None)


def test_a_platform_without_the_monolith_is_refused_clearly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "state.json").write_text(json.dumps(
        {"phase": "ready", "urls": {}, "processes": {}}))
    with pytest.raises(BenchError, match="--with legacy"):
        read_legacy(tmp_path)
    (tmp_path / "run" / "state.json").write_text(json.dumps(
        {"phase": "ready", "urls": {"legacy": "http://127.0.0.1:9/shop"},
         "processes": {"legacy": {"pid": 11, "state": "ready"}, "postgres": {"pid": 12}}}))
    target = read_legacy(tmp_path)
    assert target.url == "http://127.0.0.1:9"
    assert target.groups == {"legacy": [11], "postgres": [12]}


def test_a_monolith_being_restarted_is_named_with_why_and_where_to_look(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "state.json").write_text(json.dumps(
        {"phase": "ready", "urls": {"legacy": "http://127.0.0.1:9/shop"},
         "processes": {"legacy": {"pid": None, "state": "restarting", "log": "/h/logs/legacy.log",
                                  "last_restart": {"detail": "exited with code 3"}}}}))
    with pytest.raises(BenchError, match=r"not serving \(exited with code 3\): see "
                                         r"/h/logs/legacy.log"):
        read_legacy(tmp_path)
