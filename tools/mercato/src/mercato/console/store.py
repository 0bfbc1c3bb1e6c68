"""The console's telemetry store: spans and log lines in one SQLite file in the home.

Bounded by age and by count, whole traces first: when either bound is passed, the traces
first seen longest ago are deleted with all their spans (never half a trace), then the
oldest log lines. The defaults keep about 300 000 spans (~150 MB on disk) and 500 000 log
lines; ``MERCATO_TELEMETRY_MAX_SPANS``, ``..._MAX_LOGS`` and ``..._MAX_AGE_S`` change them.
SQLite's page cache is capped too (``cache_size``), so the process's memory does not grow
with the store.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast

SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_id TEXT,
    service TEXT NOT NULL, instance TEXT, name TEXT NOT NULL, kind INTEGER NOT NULL,
    start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    status INTEGER NOT NULL, status_message TEXT,
    attributes TEXT NOT NULL, events TEXT NOT NULL, links TEXT NOT NULL,
    order_id TEXT,
    PRIMARY KEY (trace_id, span_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY, first_seen REAL NOT NULL,
    start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    root_service TEXT, root_name TEXT, spans INTEGER NOT NULL, errors INTEGER NOT NULL,
    services TEXT NOT NULL, order_id TEXT,
    root_span_id TEXT, root_parent_id TEXT, root_start_ns INTEGER
);
CREATE INDEX IF NOT EXISTS traces_first_seen ON traces (first_seen);
CREATE INDEX IF NOT EXISTS traces_order ON traces (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS spans_order ON spans (order_id) WHERE order_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, source TEXT NOT NULL, service TEXT NOT NULL,
    level TEXT NOT NULL, trace_id TEXT, event TEXT NOT NULL, line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_trace ON logs (trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS logs_service_ts ON logs (service, ts);
CREATE INDEX IF NOT EXISTS logs_ts ON logs (ts);
CREATE VIRTUAL TABLE IF NOT EXISTS logs_fts USING fts5 (
    line, content='logs', content_rowid='id', tokenize='unicode61'
);
CREATE TRIGGER IF NOT EXISTS logs_ai AFTER INSERT ON logs BEGIN
    INSERT INTO logs_fts (rowid, line) VALUES (new.id, new.line);
END;
CREATE TRIGGER IF NOT EXISTS logs_ad AFTER DELETE ON logs BEGIN
    INSERT INTO logs_fts (logs_fts, rowid, line) VALUES ('delete', old.id, old.line);
END;
CREATE TABLE IF NOT EXISTS log_offsets (path TEXT PRIMARY KEY, inode INTEGER, offset INTEGER);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""

# OTLP status codes.
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
# Attributes that name the order (the saga's correlation id is the order id).
ORDER_ATTRIBUTES = ("mercato.order_id", "messaging.correlation_id", "order.id")


# The root's span id, parent and start beside its service and name: with them a batch
# brings the root up to date without reading the trace's spans (see Store._added).
_ROOT_COLUMNS = (("root_span_id", "TEXT"), ("root_parent_id", "TEXT"),
                 ("root_start_ns", "INTEGER"))
_CHUNK = 500  # ids per IN (...): well under SQLite's bound on parameters


class Summary(NamedTuple):
    """A row of ``traces`` but its first_seen."""
    trace_id: str
    start_ns: int
    end_ns: int
    root_service: str | None
    root_name: str | None
    spans: int
    errors: int
    services: str
    order_id: str | None
    root_span_id: str | None
    root_parent_id: str | None
    root_start_ns: int | None

    @property
    def root_unknown(self) -> bool:
        """Written before the root's span id was kept."""
        return self.root_span_id is None and self.root_name is not None


_SUMMARY_COLUMNS = ", ".join(Summary._fields)
# first_seen is left as it was: pruning goes by when a trace was first seen.
UPSERT_TRACE = (
    "INSERT INTO traces (trace_id, first_seen, start_ns, end_ns, root_service, root_name, "
    "spans, errors, services, order_id, root_span_id, root_parent_id, root_start_ns) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (trace_id) DO UPDATE "
    "SET start_ns = excluded.start_ns, end_ns = excluded.end_ns, "
    "root_service = excluded.root_service, root_name = excluded.root_name, "
    "spans = excluded.spans, errors = excluded.errors, services = excluded.services, "
    "order_id = excluded.order_id, root_span_id = excluded.root_span_id, "
    "root_parent_id = excluded.root_parent_id, root_start_ns = excluded.root_start_ns")


# json.dumps(x, default=str) makes an encoder on every call: three a span.
_json = json.JSONEncoder(default=str).encode


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _root(db: sqlite3.Connection, trace_id: str) -> tuple[Any, ...]:
    """(service, name, span id, parent id, start) of the earliest span whose parent is not
    in the trace, or Nones."""
    row = db.execute(
        "SELECT service, name, span_id, parent_id, start_ns FROM spans WHERE trace_id = ? "
        "AND (parent_id IS NULL OR parent_id NOT IN "
        "(SELECT span_id FROM spans WHERE trace_id = ?)) ORDER BY start_ns, span_id LIMIT 1",
        (trace_id, trace_id)).fetchone()
    return tuple(row) if row else (None,) * 5


def _full_summary(db: sqlite3.Connection, trace_id: str) -> Summary:
    """The summary summed up from every stored span of the trace."""
    row = db.execute(
        "SELECT min(start_ns), max(end_ns), count(*), sum(status = 2), "
        "group_concat(DISTINCT service), max(order_id) FROM spans WHERE trace_id = ?",
        (trace_id,)).fetchone()
    root = _root(db, trace_id)
    services = ",".join(sorted(set((row[4] or "").split(","))))
    return Summary(trace_id, row[0], row[1], root[0], root[1], row[2], row[3] or 0, services,
                   row[5], *root[2:])


@dataclass(frozen=True)
class Bounds:
    max_spans: int = 300_000
    max_logs: int = 500_000
    max_age_s: float = 6 * 3600

    @classmethod
    def from_env(cls) -> Bounds:
        def read(name: str, default: float) -> float:
            raw = os.environ.get(name, "").strip()
            return float(raw) if raw else default

        return cls(max_spans=int(read("MERCATO_TELEMETRY_MAX_SPANS", cls.max_spans)),
                   max_logs=int(read("MERCATO_TELEMETRY_MAX_LOGS", cls.max_logs)),
                   max_age_s=read("MERCATO_TELEMETRY_MAX_AGE_S", cls.max_age_s))


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    service: str
    instance: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status: int
    status_message: str | None
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    links: list[dict[str, Any]]

    @property
    def order_id(self) -> str | None:
        for key in ORDER_ATTRIBUTES:
            value = self.attributes.get(key)
            if value:
                return str(value)
        return None


@dataclass
class LogLine:
    ts: float
    source: str
    service: str
    level: str
    trace_id: str | None
    event: str
    line: str


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0,
                               check_same_thread=False)
    else:
        conn = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-8000")  # 8 MB at most, whatever the store's size
    conn.row_factory = sqlite3.Row
    return conn


class Store:
    """One writer (the console process); readers may open the file read-only."""

    def __init__(self, path: Path, bounds: Bounds | None = None) -> None:
        self.path = path
        self.bounds = bounds or Bounds()
        # 0700: the WAL and shared-memory files SQLite makes beside it are not 0600.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        self.db = connect(path)
        self.db.executescript(SCHEMA)
        have = {r[1] for r in self.db.execute("PRAGMA table_info(traces)")}
        for column, kind in _ROOT_COLUMNS:  # a store written before they were kept
            if column not in have:
                self.db.execute(f"ALTER TABLE traces ADD COLUMN {column} {kind}")
        os.chmod(path, 0o600)
        self.lock = threading.Lock()
        self.dropped_traces = 0

    def close(self) -> None:
        self.db.close()

    # -- writing -------------------------------------------------------------------------

    def add_spans(self, spans: Sequence[Span], now: float | None = None) -> None:
        """Store a batch and bring the summary of each of its traces up to date from the
        batch and the stored summary alone: a trace comes in ~10 batches (every service
        exports its own), and summing all its stored spans up again on each was most of
        the console's CPU (issue 17)."""
        if not spans:
            return
        now = time.time() if now is None else now
        by_trace: dict[str, list[Span]] = {}
        orders: dict[str, str] = {}
        rows = []
        for s in spans:
            by_trace.setdefault(s.trace_id, []).append(s)
            order_id = s.order_id
            if order_id is not None and order_id > orders.get(s.trace_id, ""):
                orders[s.trace_id] = order_id
            rows.append((s.trace_id, s.span_id, s.parent_id, s.service, s.instance, s.name,
                         s.kind, s.start_ns, s.end_ns, s.status, s.status_message,
                         _json(s.attributes), _json(s.events) if s.events else "[]",
                         _json(s.links) if s.links else "[]", order_id))
        trace_ids = list(by_trace)
        with self.lock, self.db:
            inserted = self.db.executemany(
                "INSERT INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (trace_id, span_id) DO NOTHING", rows).rowcount
            known = self._summaries(trace_ids)
            resent: set[str] = set()
            if inserted != len(rows):
                # A span stored already (an exporter's retry) or sent twice in the batch:
                # in its trace the copy sent last replaces the stored one, as before, and
                # the summary is summed up from the stored spans, as the copy may differ
                # (its status). Retries are rare; the batch's other traces stay cheap.
                counts = self._span_counts(trace_ids)
                resent = {t for t in trace_ids if counts.get(t, 0) != len(by_trace[t])
                          + (known[t].spans if t in known else 0)}
                self.db.executemany(
                    "INSERT OR REPLACE INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [r for r in rows if r[0] in resent])
            summaries = []
            for trace_id in trace_ids:
                old = known.get(trace_id)
                if trace_id in resent or (old is not None and old.root_unknown):
                    summaries.append(_full_summary(self.db, trace_id))
                else:
                    summaries.append(self._added(trace_id, old, by_trace[trace_id],
                                                 orders.get(trace_id)))
            self.db.executemany(UPSERT_TRACE, [(t[0], now, *t[1:]) for t in summaries])

    def _added(self, trace_id: str, old: Summary | None, batch: list[Span],
               order_id: str | None) -> Summary:
        """The summary of ``old``'s spans and ``batch``'s, none of which was stored before
        the batch; ``order_id`` is the greatest of the batch's."""
        first = batch[0]
        start, end, errors = first.start_ns, first.end_ns, 0
        services, ids = set(), set()
        # The root is the earliest span (by start, then id) whose parent is not in the
        # trace. The stored root was the earliest such among the older spans; those whose
        # parent has not come since still qualify, and none is earlier than it. So only a
        # span of the batch earlier than it can take its place, and if its own parent came
        # in the batch while none of those qualifies, an older span may: look them up.
        if old is None:
            root_start, root_id = None, ""
        else:
            root_start, root_id = old.root_start_ns, cast(str, old.root_span_id)
        earlier = []
        for s in batch:
            start, end = min(start, s.start_ns), max(end, s.end_ns)
            errors += s.status == STATUS_ERROR
            services.add(s.service)
            ids.add(s.span_id)
            if root_start is None or s.start_ns < root_start or (
                    s.start_ns == root_start and s.span_id < root_id):
                earlier.append(s)
        earlier = [s for s in earlier if s.parent_id is None or s.parent_id not in ids]
        if old is not None:
            start, end = min(start, old.start_ns), max(end, old.end_ns)
            errors += old.errors
            if old.order_id is not None and (order_id is None or old.order_id > order_id):
                order_id = old.order_id
            if earlier:  # parents in the older spans are in the trace
                parents = [s.parent_id for s in earlier if s.parent_id is not None]
                stored = self._present(trace_id, parents) if parents else set()
                earlier = [s for s in earlier
                           if s.parent_id is None or s.parent_id not in stored]
        root: tuple[Any, ...]
        if earlier:
            r = min(earlier, key=lambda s: (s.start_ns, s.span_id))
            root = (r.service, r.name, r.span_id, r.parent_id, r.start_ns)
        elif old is None:
            root = (None,) * 5
        elif old.root_parent_id is not None and old.root_parent_id in ids:
            root = _root(self.db, trace_id)
        else:
            root = (old.root_service, old.root_name, old.root_span_id, old.root_parent_id,
                    old.root_start_ns)
        if old is not None and services <= set(old.services.split(",")):
            joined = old.services
        else:  # names split on commas, as group_concat's list was
            parts = set(",".join(services).split(","))
            if old is not None:
                parts.update(old.services.split(","))
            joined = ",".join(sorted(parts))
        count = len(batch) + (old.spans if old is not None else 0)
        return Summary(trace_id, start, end, root[0], root[1], count, errors, joined,
                       order_id, *root[2:])

    def _summaries(self, trace_ids: list[str]) -> dict[str, Summary]:
        out: dict[str, Summary] = {}
        for i in range(0, len(trace_ids), _CHUNK):
            chunk = trace_ids[i:i + _CHUNK]
            out.update((r[0], Summary(*r)) for r in self.db.execute(
                f"SELECT {_SUMMARY_COLUMNS} FROM traces "  # noqa: S608 - no input in it
                f"WHERE trace_id IN ({_marks(len(chunk))})", chunk))
        return out

    def _span_counts(self, trace_ids: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in range(0, len(trace_ids), _CHUNK):
            chunk = trace_ids[i:i + _CHUNK]
            out.update(self.db.execute(
                "SELECT trace_id, count(*) FROM spans "  # noqa: S608 - no input in it
                f"WHERE trace_id IN ({_marks(len(chunk))}) GROUP BY trace_id", chunk))
        return out

    def _present(self, trace_id: str, span_ids: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(span_ids), _CHUNK):
            chunk = span_ids[i:i + _CHUNK]
            found.update(r[0] for r in self.db.execute(
                "SELECT span_id FROM spans WHERE trace_id = ? "  # noqa: S608 - no input in it
                f"AND span_id IN ({_marks(len(chunk))})", (trace_id, *chunk)))
        return found

    def add_logs(self, lines: Iterable[LogLine]) -> int:
        rows = [(ln.ts, ln.source, ln.service, ln.level, ln.trace_id, ln.event, ln.line)
                for ln in lines]
        if rows:
            with self.lock, self.db:
                self.db.executemany(
                    "INSERT INTO logs (ts, source, service, level, trace_id, event, line) "
                    "VALUES (?,?,?,?,?,?,?)", rows)
        return len(rows)

    def offset(self, path: str) -> tuple[int, int] | None:
        row = self.db.execute("SELECT inode, offset FROM log_offsets WHERE path = ?",
                              (path,)).fetchone()
        return (row[0], row[1]) if row else None

    def set_offset(self, path: str, inode: int, offset: int) -> None:
        with self.lock, self.db:
            self.db.execute("INSERT OR REPLACE INTO log_offsets VALUES (?,?,?)",
                            (path, inode, offset))

    def audit(self, who: str, action: str, detail: dict[str, Any]) -> None:
        with self.lock, self.db:
            self.db.execute("INSERT INTO audit (at, who, action, detail) VALUES (?,?,?,?)",
                            (time.time(), who, action, json.dumps(detail, default=str)))

    def prune(self, now: float | None = None) -> dict[str, int]:
        """Apply the bounds: expired traces, then the oldest traces past the span count,
        then old and surplus log lines."""
        now = time.time() if now is None else now
        b = self.bounds
        dropped_traces = 0
        with self.lock, self.db:
            cutoff = now - b.max_age_s
            old = [r[0] for r in self.db.execute(
                "SELECT trace_id FROM traces WHERE first_seen < ?", (cutoff,))]
            total = self.db.execute("SELECT coalesce(sum(spans), 0) FROM traces").fetchone()[0]
            if total > b.max_spans:
                # Down to 90 %: pruning on every batch once full would cost a scan each.
                excess = total - int(b.max_spans * 0.9)
                for trace_id, spans in self.db.execute(
                        "SELECT trace_id, spans FROM traces ORDER BY first_seen"):
                    if excess <= 0:
                        break
                    old.append(trace_id)
                    excess -= spans
            for trace_id in set(old):
                self.db.execute("DELETE FROM spans WHERE trace_id = ?", (trace_id,))
                self.db.execute("DELETE FROM traces WHERE trace_id = ?", (trace_id,))
                dropped_traces += 1
            self.db.execute("DELETE FROM logs WHERE ts < ?", (cutoff,))
            count = self.db.execute("SELECT count(*) FROM logs").fetchone()[0]
            dropped_logs = 0
            if count > b.max_logs:
                dropped_logs = count - int(b.max_logs * 0.9)
                self.db.execute("DELETE FROM logs WHERE id IN (SELECT id FROM logs "
                                "ORDER BY id LIMIT ?)", (dropped_logs,))
        self.dropped_traces += dropped_traces
        return {"traces": dropped_traces, "logs": dropped_logs}


# -- reading (shared by the console and `mercato logs --trace`) ------------------------------

def span_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    for key in ("attributes", "events", "links"):
        d[key] = json.loads(d[key])
    d["duration_ms"] = round((d["end_ns"] - d["start_ns"]) / 1e6, 3)
    return d


def trace_spans(db: sqlite3.Connection, trace_id: str) -> list[dict[str, Any]]:
    return [span_dict(r) for r in db.execute(
        "SELECT * FROM spans WHERE trace_id = ? ORDER BY start_ns", (trace_id,))]


def traces_of_order(db: sqlite3.Connection, order_id: str) -> list[str]:
    return [r[0] for r in db.execute(
        "SELECT DISTINCT trace_id FROM spans WHERE order_id = ?", (order_id,))]


def search_traces(db: sqlite3.Connection, *, service: str | None = None,
                  operation: str | None = None, status: str | None = None,
                  min_ms: float | None = None, order_id: str | None = None,
                  limit: int = 50) -> list[dict[str, Any]]:
    where: list[str] = ["1=1"]
    args: list[Any] = []
    if service:
        where.append("trace_id IN (SELECT trace_id FROM spans WHERE service = ?)")
        args.append(service)
    if operation:
        where.append("trace_id IN (SELECT trace_id FROM spans WHERE name LIKE ?)")
        args.append(f"%{operation}%")
    if status == "error":
        where.append("errors > 0")
    elif status == "ok":
        where.append("errors = 0")
    if min_ms is not None:
        where.append("(end_ns - start_ns) >= ?")
        args.append(int(min_ms * 1e6))
    if order_id:
        where.append("trace_id IN (SELECT trace_id FROM spans WHERE order_id = ?)")
        args.append(order_id)
    rows = db.execute(f"SELECT * FROM traces WHERE {' AND '.join(where)} "  # noqa: S608 - fixed clauses
                      "ORDER BY start_ns DESC LIMIT ?", (*args, limit))
    out = []
    for r in rows:
        d = dict(r)
        for column, _ in _ROOT_COLUMNS:
            d.pop(column, None)
        d["duration_ms"] = round((d["end_ns"] - d["start_ns"]) / 1e6, 3)
        d["services"] = d["services"].split(",") if d["services"] else []
        out.append(d)
    return out


def search_logs(db: sqlite3.Connection, *, service: str | None = None,
                level: str | None = None, trace_id: str | None = None,
                text: str | None = None, source: str | None = None,
                limit: int = 200) -> list[dict[str, Any]]:
    where, args = ["1=1"], []
    if source:
        where.append("source = ?")
        args.append(source)
    if service:
        where.append("service = ?")
        args.append(service)
    if level:
        where.append("level = ?")
        args.append(level.lower())
    if trace_id:
        where.append("trace_id = ?")
        args.append(trace_id.lower())
    if text:
        # Each word as a quoted FTS5 string: user input never becomes query syntax.
        words = [w.replace('"', '""') for w in text.split()]
        if words:
            where.append("id IN (SELECT rowid FROM logs_fts WHERE logs_fts MATCH ?)")
            args.append(" ".join(f'"{w}"' for w in words))
    rows = db.execute(f"SELECT * FROM (SELECT * FROM logs WHERE {' AND '.join(where)} "  # noqa: S608
                      "ORDER BY ts DESC, id DESC LIMIT ?) ORDER BY ts, id", (*args, limit))
    return [dict(r) for r in rows]
