"""Every process's log file under the home, indexed as it grows.

Each ``logs/*.log`` is read from where the last pass stopped (kept in the store, so a
restarted console neither loses nor repeats lines; a file replaced under the same name
starts over), complete lines only. JSON lines (the services, the supervisor, Envoy's
access log) give their service, level and trace id; PostgreSQL's, NATS's and Envoy's own
text lines are indexed by their file's name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mercato.console.store import LogLine, Store
from mercato.logview import parse_line

MAX_READ = 4 << 20  # per file per pass: a huge backlog is taken in slices
_TEXT_LEVEL = re.compile(r"\b(FATAL|PANIC|ERROR|WARNING|WARN|error|warning|critical)\b")


def _level(doc: dict[str, Any]) -> str:
    if doc.get("logger") == "envoy.access":
        try:
            status = int(doc.get("status") or 0)
        except (TypeError, ValueError):
            status = 0
        return "error" if status >= 500 or status == 0 else "warning" if status >= 400 else "info"
    level = str(doc.get("level") or "info").lower()
    return {"warn": "warning", "exception": "error", "fatal": "critical"}.get(level, level)


def _trace_id(doc: dict[str, Any]) -> str | None:
    tid = doc.get("trace_id")
    if isinstance(tid, str) and len(tid) == 32 and tid.strip("0"):
        return tid.lower()
    parts = str(doc.get("traceparent") or "").split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        return parts[1].lower()
    return None


def to_log_line(raw: str, source: str, last_ts: float) -> LogLine:
    entry = parse_line(raw, source, last_ts, 0)
    doc = entry.doc
    if doc is None:
        m = _TEXT_LEVEL.search(raw)
        level = m.group(1).lower() if m else "info"
        level = {"warn": "warning", "fatal": "critical", "panic": "critical"}.get(level, level)
        return LogLine(ts=entry.ts, source=source, service=_service_of(source), level=level,
                       trace_id=None, event=raw[:300], line=raw)
    service = "envoy" if doc.get("logger") == "envoy.access" else str(
        doc.get("service") or _service_of(source))
    event = (f"{doc.get('method')} {doc.get('path')} {doc.get('status')}"
             if doc.get("logger") == "envoy.access" else str(doc.get("event", "")))
    return LogLine(ts=entry.ts, source=source, service=service, level=_level(doc),
                   trace_id=_trace_id(doc), event=event[:300], line=raw)


def _service_of(source: str) -> str:
    name = re.sub(r"-\d+$", "", source)
    return "envoy" if name == "envoy-access" else name


class LogIndexer:
    def __init__(self, logs_dir: Path, store: Store) -> None:
        self.logs_dir = logs_dir
        self.store = store
        self.last_ts: dict[str, float] = {}

    def pass_once(self) -> int:
        added = 0
        for path in sorted(self.logs_dir.glob("*.log")):
            added += self._read(path)
        return added

    def _read(self, path: Path) -> int:
        try:
            st = path.stat()
        except FileNotFoundError:
            return 0
        known = self.store.offset(str(path))
        offset = known[1] if known and known[0] == st.st_ino and known[1] <= st.st_size else 0
        if offset >= st.st_size:
            return 0
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(MAX_READ)
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) < MAX_READ:
                return 0  # a line still being written
            end = len(data) - 1  # one line longer than a slice: index it in pieces
        chunk = data[:end + 1]
        source = path.stem
        last = self.last_ts.get(source, st.st_mtime)
        lines = []
        for raw in chunk.decode(errors="replace").splitlines():
            if not raw.strip():
                continue
            line = to_log_line(raw, source, last)
            last = line.ts
            lines.append(line)
        self.last_ts[source] = last
        self.store.add_logs(lines)
        self.store.set_offset(str(path), st.st_ino, offset + len(chunk))
        return len(lines)

