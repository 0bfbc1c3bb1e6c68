"""The telemetry store: OTLP in through the protobuf definitions, traces found by order,
bounds that drop whole traces oldest first, log search that takes any text."""

from __future__ import annotations

from pathlib import Path

import pytest
from mercato.console import otlp
from mercato.console.store import (
    Bounds,
    LogLine,
    Store,
    search_logs,
    search_traces,
    trace_spans,
    traces_of_order,
)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "t" / "telemetry.db", Bounds(max_spans=10, max_logs=5,
                                                          max_age_s=3600))


def test_spans_from_the_sdks_protobuf_are_stored_as_one_trace(recorded, store: Store) -> None:
    spans = otlp.spans(recorded("orders", error=True, order_id="o-1"),
                       "application/x-protobuf")
    store.add_spans(spans)
    assert {s.service for s in spans} == {"orders"}
    found = trace_spans(store.db, spans[0].trace_id)
    assert [s["name"] for s in found] == ["POST /api/orders", "consume x"]
    child = found[1]
    assert child["parent_id"] == found[0]["span_id"]
    assert child["status"] == 2 and child["status_message"] == "card_declined"
    assert child["events"][0]["attributes"] == {"saga.reason": "card_declined"}
    assert traces_of_order(store.db, "o-1") == [spans[0].trace_id]
    [summary] = search_traces(store.db, status="error")
    assert summary["root_name"] == "POST /api/orders" and summary["errors"] == 1
    assert search_traces(store.db, status="ok") == []
    assert search_traces(store.db, order_id="o-1")[0]["trace_id"] == spans[0].trace_id
    assert search_traces(store.db, min_ms=10_000) == []


def test_a_body_that_is_not_otlp_is_refused() -> None:
    with pytest.raises(otlp.BadPayload):
        otlp.spans(b"\xff\xfenot protobuf", "application/x-protobuf")
    with pytest.raises(otlp.BadPayload):
        otlp.spans(b"{not json", "application/json")


def test_past_the_span_bound_the_oldest_traces_go_whole(recorded, store: Store) -> None:
    ids = []
    for i in range(8):  # 2 spans each: 16 > 10
        spans = otlp.spans(recorded("catalog"), "application/x-protobuf")
        store.add_spans(spans, now=1000.0 + i)
        ids.append(spans[0].trace_id)
    dropped = store.prune(now=1010.0)
    kept = {r[0] for r in store.db.execute("SELECT DISTINCT trace_id FROM spans")}
    assert dropped["traces"] == 4
    assert kept == set(ids[4:])  # the four seen first went, with every span of theirs
    assert store.db.execute("SELECT count(*) FROM traces").fetchone()[0] == 4


def test_traces_past_the_age_bound_go(recorded, store: Store) -> None:
    old = otlp.spans(recorded("catalog"), "application/x-protobuf")
    new = otlp.spans(recorded("catalog"), "application/x-protobuf")
    store.add_spans(old, now=0.0)
    store.add_spans(new, now=5000.0)
    store.prune(now=5000.0)
    assert trace_spans(store.db, old[0].trace_id) == []
    assert len(trace_spans(store.db, new[0].trace_id)) == 2


def line(i: int, text: str, **kw: str) -> LogLine:
    return LogLine(ts=float(i), source=kw.get("source", "orders-1"),
                   service=kw.get("service", "orders"), level=kw.get("level", "info"),
                   trace_id=kw.get("trace_id"), event=text, line=text)


def test_logs_are_found_by_text_service_level_and_trace(store: Store) -> None:
    tid = "ab" * 16
    store.add_logs([line(1, "order_placed total=99"), line(2, "stock_reserved sku=KETTLE",
                                                            service="inventory",
                                                            source="inventory-1"),
                    line(3, 'weird "quote" AND OR NEAR(', level="error", trace_id=tid)])
    assert [r["event"] for r in search_logs(store.db, text="kettle")] == [
        "stock_reserved sku=KETTLE"]
    assert len(search_logs(store.db, service="orders")) == 2
    # Query syntax in the text is searched for, never run.
    assert [r["ts"] for r in search_logs(store.db, text='"quote" NEAR(')] == [3.0]
    assert [r["ts"] for r in search_logs(store.db, level="error")] == [3.0]
    assert [r["ts"] for r in search_logs(store.db, trace_id=tid.upper())] == [3.0]


def test_past_the_log_bound_the_oldest_lines_go_and_leave_the_index(store: Store) -> None:
    store.add_logs([line(i, f"word{i}") for i in range(8)])
    store.prune(now=10.0)
    left = [r["event"] for r in search_logs(store.db)]
    assert left == [f"word{i}" for i in range(4, 8)]
    assert search_logs(store.db, text="word1") == []


def test_the_store_is_private_to_the_homes_owner(store: Store) -> None:
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.path.parent.stat().st_mode & 0o777 == 0o700
