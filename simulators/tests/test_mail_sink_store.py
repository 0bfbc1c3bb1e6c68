"""The mail sink's store: a message stored before the 250 survives the sink killed right
after it, with the WAL synced at checkpoints rather than at every message (ADR 0050)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from simulators.mail_sink import MessageStore

RAW = b"Subject: hello\r\nMessage-ID: <m1@test>\r\n\r\nbody\r\n"


def test_the_wal_is_synced_at_checkpoints_not_per_message(tmp_path: Path) -> None:
    store = MessageStore(tmp_path / "m.sqlite3")
    try:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        store.close()


def test_a_stored_message_survives_the_sink_killed_right_after(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    child = (
        "import os, signal, sys\n"
        "from simulators.mail_sink import MessageStore\n"
        f"s = MessageStore(__import__('pathlib').Path({str(path)!r}))\n"
        f"s.add(mail_from='shop@example.com', to=['a@example.com'], raw={RAW!r})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", child], timeout=60, check=False)
    assert done.returncode == -signal.SIGKILL
    store = MessageStore(path)
    try:
        [message] = store.listing()
        assert (message["subject"], message["to"]) == ("hello", ["a@example.com"])
    finally:
        store.close()
