"""Reading the runtime's logs: select files, parse lines, merge by time, render with Rich.

Services (and the supervisor) write JSON lines; PostgreSQL and NATS write their own text
formats, whose timestamps are parsed too so that everything interleaves correctly. A line
with no timestamp of its own (a traceback, say) takes the previous line's time, which keeps
it next to the line it belongs to.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

ENGINE_LOGS = ("postgres", "nats", "envoy", "supervisor", "control-plane")
_PG_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) (UTC|[+-]\d\d)")
_NATS_TS = re.compile(r"^\[\d+\] (\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d+) ")
_ENVOY_TS = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\]")
_LEVEL_STYLE = {"debug": "dim", "info": "green", "warning": "yellow", "warn": "yellow",
                "error": "bold red", "critical": "bold red", "exception": "bold red"}
_PALETTE = ["cyan", "magenta", "blue", "green", "yellow", "bright_cyan", "bright_magenta",
            "bright_blue"]
_SKIP_KEYS = {"timestamp", "level", "event", "service", "instance", "logger"}


@dataclass(order=True)
class Entry:
    ts: float
    seq: int
    source: str = field(compare=False)
    raw: str = field(compare=False)
    doc: dict[str, Any] | None = field(compare=False, default=None)


def select_logs(logs_dir: Path, service: str | None = None) -> list[Path]:
    """``service`` matches ``<service>.log`` and ``<service>-<n>.log`` (its instances)."""
    files = sorted(p for p in logs_dir.glob("*.log") if p.is_file())
    if service is None:
        return files
    pattern = re.compile(rf"^{re.escape(service)}(-\d+)?$")
    return [p for p in files if pattern.match(p.stem)]


def known_sources(logs_dir: Path) -> list[str]:
    names = {re.sub(r"-\d+$", "", p.stem) for p in logs_dir.glob("*.log")}
    return sorted(names)


def _parse_time(text: str) -> float | None:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def parse_line(line: str, source: str, last_ts: float, seq: int) -> Entry:
    line = line.rstrip("\n")
    if line.startswith("{"):
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            # Envoy's JSON access log says "time" where everything else says "timestamp".
            ts = _parse_time(str(doc.get("timestamp") or doc.get("time") or "")) or last_ts
            return Entry(ts, seq, source, line, doc)
    for rx, fmt_local in ((_PG_TS, False), (_NATS_TS, True), (_ENVOY_TS, True)):
        m = rx.match(line)
        if m:
            stamp = m.group(1).replace("/", "-")
            if fmt_local:
                # NATS and Envoy log local time without a zone.
                try:
                    ts = datetime.fromisoformat(stamp).timestamp()
                except ValueError:
                    ts = last_ts
            else:
                parsed = _parse_time(stamp) if m.group(2) == "UTC" else None
                ts = parsed if parsed is not None else last_ts
            return Entry(ts, seq, source, line)
    return Entry(last_ts, seq, source, line)


def parse_lines(lines: Iterable[str], source: str, start_ts: float = 0.0) -> Iterator[Entry]:
    last = start_ts
    for seq, line in enumerate(lines):
        entry = parse_line(line, source, last, seq)
        last = entry.ts
        yield entry


def matches_trace(entry: Entry, trace: str) -> bool:
    if entry.doc is None:
        return False
    if str(entry.doc.get("trace_id", "")).startswith(trace):
        return True
    # Envoy's access log carries the W3C header instead: 00-<trace id>-<span id>-<flags>.
    parts = str(entry.doc.get("traceparent") or "").split("-")
    return len(parts) == 4 and parts[1].startswith(trace)


def merged(files: list[Path], trace: str | None = None) -> list[Entry]:
    streams = []
    for path in files:
        with open(path, errors="replace") as fh:
            entries = list(parse_lines(fh, path.stem))
        if trace:
            entries = [e for e in entries if matches_trace(e, trace)]
        streams.append(entries)
    return list(heapq.merge(*streams))


def from_index(db_path: Path, trace: str, service: str | None = None) -> list[Entry] | None:
    """A trace's lines from the console's log index (``mercato logs --trace``): one indexed
    lookup instead of reading every file. None when there is no index (``--no-telemetry``,
    or no platform started with the console yet) or the id is not a full trace id."""
    if not db_path.exists() or len(trace) != 32:
        return None
    import sqlite3

    from mercato.console.store import connect, search_logs

    try:
        db = connect(db_path, readonly=True)
        try:
            rows = search_logs(db, trace_id=trace, limit=100_000)
        finally:
            db.close()
    except sqlite3.Error:
        return None
    pattern = re.compile(rf"^{re.escape(service)}(-\d+)?$") if service else None
    out = []
    for seq, r in enumerate(rows):
        if pattern is not None and not pattern.match(r["source"]):
            continue
        entry = parse_line(r["line"], r["source"], r["ts"], seq)
        out.append(entry)
    return out


def _color(name: str) -> str:
    return _PALETTE[sum(name.encode()) % len(_PALETTE)]


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 300 else text[:297] + "..."


def render(entry: Entry, width: int = 12) -> Text:
    when = datetime.fromtimestamp(entry.ts).strftime("%H:%M:%S.%f")[:-3] if entry.ts else " " * 12
    text = Text()
    text.append(when + " ", style="dim")
    source = str((entry.doc or {}).get("instance") or entry.source)
    width = max(width, len(source))
    text.append(f"{source:<{width}} ", style=_color(source))
    if entry.doc is None:
        text.append(entry.raw)
        return text
    doc = entry.doc
    level = str(doc.get("level", "info")).lower()
    text.append(f"{level.upper():<7} ", style=_LEVEL_STYLE.get(level, ""))
    event = doc.get("event")
    if event is None and "method" in doc:  # an access-log record
        event = f"{doc.get('method')} {doc.get('path')} {doc.get('status')}"
        doc = {k: v for k, v in doc.items() if k not in ("method", "path", "status", "time")}
    text.append(str(event or ""), style="bold")
    exc = None
    for key, value in doc.items():
        if key in _SKIP_KEYS:
            continue
        if key in ("exception", "exc_info_text"):
            exc = str(value)
            continue
        text.append(f" {key}=", style="dim")
        text.append(_short(value))
    if exc:
        text.append("\n" + exc.rstrip(), style="red")
    return text


def print_entries(console: Console, entries: Iterable[Entry]) -> None:
    for entry in entries:
        console.print(render(entry), soft_wrap=True, highlight=False)


def follow(console: Console, logs_dir: Path, service: str | None, trace: str | None,
           from_end: bool = True, poll_s: float = 0.2,
           keep_going: Any = lambda: True) -> None:
    """Print new lines of the selected logs as they are written (new files included)."""
    offsets: dict[Path, int] = {}
    last_ts: dict[Path, float] = {}
    partial: dict[Path, str] = {}
    if from_end:
        for path in select_logs(logs_dir, service):
            offsets[path] = path.stat().st_size
    seq = 0
    while keep_going():
        batch: list[Entry] = []
        for path in select_logs(logs_dir, service):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            pos = offsets.get(path, 0)
            if size < pos:  # truncated or replaced
                pos = 0
            if size == pos:
                continue
            with open(path, "rb") as fh:
                fh.seek(pos)
                chunk = fh.read()
            offsets[path] = pos + len(chunk)
            text = partial.pop(path, "") + chunk.decode(errors="replace")
            lines = text.split("\n")
            if lines[-1]:
                partial[path] = lines[-1]
            for line in lines[:-1]:
                seq += 1
                entry = parse_line(line, path.stem, last_ts.get(path, time.time()), seq)
                last_ts[path] = entry.ts
                if trace is None or matches_trace(entry, trace):
                    batch.append(entry)
        print_entries(console, sorted(batch))
        time.sleep(poll_s)


def log_files_exist(logs_dir: Path) -> bool:
    return logs_dir.is_dir() and any(os.scandir(logs_dir))
