"""The traces summary kept up to date batch by batch (issue 17) is the one summed up from
every stored span: whatever order a trace's batches come in, re-sent spans included, and
whether or not its root ever comes."""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mercato.console.store import Span, Store, _full_summary, search_traces

TID = "ab" * 16
COLUMNS = "start_ns, end_ns, root_service, root_name, spans, errors, services, order_id"


def span(span_id: str, parent: str | None, start: int, *, service: str = "orders",
         status: int = 0, order: str | None = None, end: int | None = None,
         trace_id: str = TID) -> Span:
    return Span(trace_id=trace_id, span_id=span_id, parent_id=parent, service=service,
                instance=None, name=f"op {span_id}", kind=1, start_ns=start,
                end_ns=start + 5 if end is None else end, status=status, status_message=None,
                attributes={"mercato.order_id": order} if order else {}, events=[], links=[])


def expected(sent: list[Span]) -> tuple[object, ...]:
    """The summary of what was sent, worked out here: the copy of a span sent last is the
    one stored, the root is the earliest span (then the lowest id) whose parent is not in
    the trace, services are split on commas as group_concat's list was."""
    latest = {s.span_id: s for s in sent}
    spans = list(latest.values())
    orphans = [s for s in spans if s.parent_id is None or s.parent_id not in latest]
    root = min(orphans, key=lambda s: (s.start_ns, s.span_id), default=None)
    orders = [s.order_id for s in spans if s.order_id is not None]
    return (min(s.start_ns for s in spans), max(s.end_ns for s in spans),
            root.service if root else None, root.name if root else None, len(spans),
            sum(s.status == 2 for s in spans),
            ",".join(sorted({part for s in spans for part in s.service.split(",")})),
            max(orders, default=None))


def stored(store: Store, trace_id: str = TID) -> tuple[object, ...]:
    row = store.db.execute(f"SELECT {COLUMNS} FROM traces WHERE trace_id = ?",
                           (trace_id,)).fetchone()
    return tuple(row)


def recomputed(store: Store, trace_id: str = TID) -> tuple[object, ...]:
    s = _full_summary(store.db, trace_id)
    return (s.start_ns, s.end_ns, s.root_service, s.root_name, s.spans, s.errors, s.services,
            s.order_id)


def send(store: Store, batches: list[list[Span]],
         sent: dict[str, list[Span]] | None = None) -> None:
    """Each batch in turn; after each, the summary is the one worked out by hand and the
    one summed up from the stored spans. ``sent``: what was sent before, by trace."""
    sent = {} if sent is None else sent
    for batch in batches:
        store.add_spans(batch)
        for s in batch:
            sent.setdefault(s.trace_id, []).append(s)
        for trace_id, spans in sent.items():
            assert stored(store, trace_id) == expected(spans) == recomputed(store, trace_id)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "t" / "telemetry.db")


# A request through the edge: envoy -> orders -> (catalog, a message to inventory).
EDGE = span("e", None, 0, service="envoy", end=100)
ORDERS = span("o", "e", 10, end=90)
CATALOG = span("c", "o", 20, service="catalog", end=30)
PUBLISH = span("p", "o", 40, order="o-1", end=45)
CONSUME = span("i", "p", 50, service="inventory", order="o-1", end=80)


def test_children_before_their_parents_the_root_last(store: Store) -> None:
    send(store, [[CONSUME], [CATALOG, PUBLISH], [ORDERS], [EDGE]])
    assert stored(store) == (0, 100, "envoy", "op e", 5, 0,
                             "catalog,envoy,inventory,orders", "o-1")


def test_the_root_in_the_middle(store: Store) -> None:
    send(store, [[PUBLISH], [EDGE, CATALOG], [CONSUME], [ORDERS]])
    assert stored(store)[2:4] == ("envoy", "op e")


def test_until_the_root_comes_the_earliest_span_whose_parent_is_missing_is(
        store: Store) -> None:
    store.add_spans([CONSUME, CATALOG])
    assert stored(store)[2:4] == ("catalog", "op c")
    # Its parent comes, and a parent of that one is still missing: the new earliest.
    store.add_spans([ORDERS])
    assert stored(store)[2:4] == ("orders", "op o")


def test_when_the_roots_parent_comes_later_than_an_older_span_that_one_is_root(
        store: Store) -> None:
    # "c" is root, "i" waits for "p"; "o" (c's parent) starts after "i": the root is "i",
    # which only the stored spans can tell.
    late_orders = replace(ORDERS, start_ns=60, parent_id="x")
    send(store, [[CATALOG, CONSUME], [late_orders]])
    assert stored(store)[2:4] == ("inventory", "op i")


def test_a_span_that_starts_before_its_stored_parent_is_not_the_root(store: Store) -> None:
    # Two hosts' clocks: the child's start is earlier than its parent's.
    skewed = span("k", "o", 5, service="payments")
    send(store, [[ORDERS, CONSUME], [skewed]])
    assert stored(store)[2:4] == ("orders", "op o")


def test_a_trace_whose_root_never_comes(store: Store) -> None:
    send(store, [[CONSUME], [PUBLISH, CATALOG], [ORDERS]])
    assert stored(store)[2:5] == ("orders", "op o", 4)


def test_a_span_sent_again_is_counted_once(store: Store) -> None:
    send(store, [[ORDERS, PUBLISH], [PUBLISH, CONSUME], [ORDERS], [EDGE, EDGE]])
    assert stored(store)[4] == 4
    assert store.db.execute("SELECT count(*) FROM spans").fetchone()[0] == 4


def test_a_span_sent_again_with_another_status_counts_as_sent_last(store: Store) -> None:
    failed = replace(CONSUME, status=2, end_ns=200)
    sent: dict[str, list[Span]] = {}
    send(store, [[EDGE, ORDERS, CONSUME], [PUBLISH, failed]], sent)
    assert stored(store)[1] == 200 and stored(store)[5] == 1
    send(store, [[replace(failed, status=1)]], sent)
    assert stored(store)[5] == 0
    # Twice in one batch: the copy sent last, as before.
    send(store, [[CATALOG, replace(CATALOG, status=2)]], sent)
    assert stored(store)[5] == 1


def test_a_batch_of_many_traces_is_summed_up_per_trace(store: Store) -> None:
    other = "cd" * 16
    send(store, [[CONSUME, replace(ORDERS, trace_id=other)],
                 [replace(EDGE, trace_id=other), ORDERS, replace(CONSUME, trace_id=other)],
                 [EDGE, replace(CONSUME, trace_id=other)]])
    assert stored(store, other)[4] == 3 and stored(store)[4] == 3


def test_first_seen_stays_when_the_trace_was_first_seen(store: Store) -> None:
    store.add_spans([CONSUME], now=100.0)
    store.add_spans([EDGE], now=200.0)
    store.add_spans([CONSUME], now=300.0)  # sent again: the full sum
    assert store.db.execute("SELECT first_seen FROM traces").fetchone()[0] == 100.0


def test_what_is_kept_to_find_the_root_is_not_shown(store: Store) -> None:
    store.add_spans([EDGE, ORDERS])
    [row] = search_traces(store.db)
    assert set(row) == {"trace_id", "first_seen", "start_ns", "end_ns", "root_service",
                        "root_name", "spans", "errors", "services", "order_id",
                        "duration_ms"}


def test_a_store_written_before_the_root_was_kept_is_summed_up_in_full(
        tmp_path: Path) -> None:
    path = tmp_path / "t" / "telemetry.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as db:  # the table as it was before
        db.execute("CREATE TABLE traces (trace_id TEXT PRIMARY KEY, first_seen REAL NOT NULL, "
                   "start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, root_service TEXT, "
                   "root_name TEXT, spans INTEGER NOT NULL, errors INTEGER NOT NULL, "
                   "services TEXT NOT NULL, order_id TEXT)")
    db.close()
    store = Store(path)
    store.add_spans([CATALOG, CONSUME])
    # As the code before left it: no root span id.
    store.db.execute("UPDATE traces SET root_span_id = NULL, root_parent_id = NULL, "
                     "root_start_ns = NULL")
    store.db.commit()
    store.add_spans([replace(ORDERS, start_ns=60, parent_id="x")])  # takes c's place
    assert stored(store)[2:4] == ("inventory", "op i")
    assert stored(store) == recomputed(store)


# Traces of up to 10 spans, two at a time: parents anywhere (missing, cycles, themselves),
# start times that tie, copies sent again that differ, any arrival order and batching.
IDS = [f"{i:016x}" for i in range(10)]


@st.composite
def deliveries(draw: st.DrawFn) -> list[list[Span]]:
    n = draw(st.integers(1, 10))
    spans = [span(IDS[i], draw(st.sampled_from([None, "f" * 16, *IDS[:n]])),
                  draw(st.integers(0, 12)), end=draw(st.integers(12, 20)),
                  service=draw(st.sampled_from(["envoy", "orders", "inventory", "a,b"])),
                  status=draw(st.sampled_from([0, 1, 2])),
                  order=draw(st.sampled_from([None, "o-1", "o-2"])),
                  trace_id=draw(st.sampled_from([TID, "cd" * 16])))
             for i in range(n)]
    again = [replace(spans[i], status=draw(st.sampled_from([0, 2])),
                     start_ns=draw(st.integers(0, 12)),
                     service=draw(st.sampled_from(["orders", "payments"])))
             for i in draw(st.lists(st.integers(0, n - 1), max_size=3))]
    sends = draw(st.permutations(spans + again))
    cuts = draw(st.lists(st.booleans(), min_size=len(sends), max_size=len(sends)))
    batches: list[list[Span]] = [[]]
    for s, cut in zip(sends, cuts, strict=True):
        if cut and batches[-1]:
            batches.append([])
        batches[-1].append(s)
    return batches


@settings(max_examples=300, deadline=None)
@given(deliveries())
def test_any_arrival_order_gives_the_summary_of_all_the_stored_spans(
        batches: list[list[Span]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "t" / "telemetry.db")
        try:
            send(store, batches)
        finally:
            store.close()
