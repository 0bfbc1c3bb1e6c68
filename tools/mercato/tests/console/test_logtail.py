"""Every process's log file indexed as it grows: once per line, never half a line, from
the start again when the file is replaced."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mercato.console.logtail import LogIndexer
from mercato.console.store import Store, search_logs

TID = "0af7651916cd43dd8448eb211c80319c"


def test_lines_are_indexed_once_with_service_level_and_trace(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    store = Store(tmp_path / "telemetry.db")
    svc = logs / "orders-1.log"
    svc.write_text(json.dumps({"event": "order_placed", "level": "info", "service": "orders",
                               "trace_id": TID, "timestamp": "2026-12-02T10:00:00Z"}) + "\n"
                   + '{"event": "half a li')
    access = logs / "envoy-access.log"
    access.write_text(json.dumps({"logger": "envoy.access", "method": "POST",
                                  "path": "/api/orders", "status": 503, "trace_id": TID,
                                  "time": "2026-12-02T10:00:01Z"}) + "\n")
    (logs / "postgres.log").write_text("2026-12-02 10:00:02.000 UTC [1] ERROR:  boom\n")
    indexer = LogIndexer(logs, store)
    assert indexer.pass_once() == 3
    assert indexer.pass_once() == 0  # nothing new: nothing twice
    rows = search_logs(store.db, trace_id=TID)
    assert [(r["service"], r["level"], r["event"]) for r in rows] == [
        ("orders", "info", "order_placed"), ("envoy", "error", "POST /api/orders 503")]
    assert search_logs(store.db, service="postgres")[0]["level"] == "error"
    with open(svc, "a") as fh:
        fh.write('ne", "level": "warning", "service": "orders"}\n')
    assert indexer.pass_once() == 1
    assert search_logs(store.db, level="warning")[0]["event"] == "half a line"
    # A restarted indexer (the console restarted) carries on where the last one stopped.
    assert LogIndexer(logs, store).pass_once() == 0
    # A file replaced under the same name is read from its start.
    os.unlink(svc)
    svc.write_text(json.dumps({"event": "fresh", "service": "orders"}) + "\n")
    assert indexer.pass_once() == 1
