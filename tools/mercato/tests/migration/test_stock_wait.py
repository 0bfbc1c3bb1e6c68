"""A step of checkout's share waits for the stock split's pass at the new share: only a pass
begun after the flag was written counts (one begun before read the old share)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from mercato.migration import commands
from mercato.migration.commands import Platform


class SplitStandIn:
    """The stock split's /stock/status, its last pass set by the test."""

    def __init__(self) -> None:
        self.last: dict[str, Any] = {}
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"ready": True, "products": 1,
                                   "last_pass": stand_in.last}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def split(monkeypatch: pytest.MonkeyPatch) -> Iterator[SplitStandIn]:
    monkeypatch.setattr(commands, "STOCK_SPLIT_TIMEOUT_S", 1.0)
    s = SplitStandIn()
    yield s
    s.server.shutdown()


def _platform(tmp_path: Path, split: SplitStandIn) -> Platform:
    return Platform(running=True, acl_url=None, applied_file=tmp_path / "applied.json",
                    stock_url=split.url)


def test_a_pass_begun_after_the_step_at_its_share_ends_the_wait(
        tmp_path: Path, split: SplitStandIn) -> None:
    since = time.time()
    split.last = {"started_at": since + 0.01, "percent": 50,
                  "units": {"legacy": 3, "services": 3}, "moved": {"to_services": 3}}
    got = commands._wait_stock_split(_platform(tmp_path, split), 50, since)
    assert isinstance(got, dict) and got["units"] == {"legacy": 3, "services": 3}


def test_a_pass_begun_before_the_step_does_not_count(tmp_path: Path,
                                                     split: SplitStandIn) -> None:
    since = time.time()
    # It read the flag file before the step: at the same share only by chance.
    split.last = {"started_at": since - 0.5, "percent": 50, "units": {}}
    later = threading.Timer(0.3, lambda: split.last.update(started_at=since + 0.2))
    later.start()
    t0 = time.monotonic()
    got = commands._wait_stock_split(_platform(tmp_path, split), 50, since)
    assert isinstance(got, dict) and time.monotonic() - t0 >= 0.25


def test_no_pass_at_the_share_in_time_is_said(tmp_path: Path, split: SplitStandIn) -> None:
    since = time.time()
    split.last = {"started_at": since + 0.1, "percent": 0, "units": {}}
    assert commands._wait_stock_split(_platform(tmp_path, split), 50, since) is False
    split.last = {"started_at": since + 0.1, "percent": 50, "error": "ConnectError: refused"}
    assert commands._wait_stock_split(_platform(tmp_path, split), 50, since) is False
