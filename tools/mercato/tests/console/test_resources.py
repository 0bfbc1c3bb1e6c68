"""The console's resources table from the supervisor's state file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mercato.console.resources import Resources
from mercato.runtime.paths import Home


def test_api_links_only_for_the_services_behind_the_edge(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.state_file.parent.mkdir(parents=True, exist_ok=True)
    home.state_file.write_text(json.dumps({"urls": {"docs": {
        "orders": "http://localhost:8080/api/orders/docs"}}, "processes": {
        "orders-1": {"kind": "service", "service": "orders", "port": 7001,
                     "pid": os.getpid(), "state": "ready"},
        "legacy": {"kind": "service", "service": "legacy", "port": 8000, "pid": None,
                   "state": "stopped"},
        "postgres": {"kind": "engine", "port": 5432, "pid": None, "state": "ready"}}}))
    rows = {r["name"]: r for r in Resources(home).snapshot()["processes"]}
    assert rows["orders-1"]["api"] == "/api/orders" and rows["orders-1"]["healthy"]
    assert rows["orders-1"]["rss_bytes"] > 0
    # The monolith has its own port, not a route at the edge; engines have no API.
    assert rows["legacy"]["api"] is None and not rows["legacy"]["healthy"]
    assert rows["postgres"]["api"] is None
