"""Migrations run by processes starting together: the race a test must open on purpose.

Instances of one service starting together (and `mercato up`'s client registration beside
identity) each migrate the same database as they start: one migrates, the others wait on its
advisory lock and then find the work done. If the lock is let go before the first one's
commit, the next one sees no version table, tries to create it, fails and its process exits.
That window lasts a millisecond, so CI hit it only now and then; this helper holds the first
commit open long enough for a second process to reach the lock every time.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.engine import Engine

HOLD_COMMIT_S = 3.0


def second_start_during_first_commit(url: str, migrate_here: Callable[[str], None],
                                     script: str) -> subprocess.CompletedProcess[str]:
    """Run ``migrate_here(url)`` in this process with its first commit held open, and
    ``script`` (Python source; ``sys.argv[1]`` is the URL) in a second process started while
    that commit waits. Returns the second process's outcome."""
    first = threading.get_ident()
    committing = threading.Event()
    second: list[subprocess.CompletedProcess[str]] = []

    def slow_commit(_conn: object) -> None:
        if threading.get_ident() == first and not committing.is_set():
            committing.set()
            time.sleep(HOLD_COMMIT_S)  # the second process starts and reaches the lock

    def start_second() -> None:
        if committing.wait(60):
            second.append(subprocess.run([sys.executable, "-c", script, url],  # noqa: S603
                                         capture_output=True, text=True, timeout=120,
                                         check=False))

    event.listen(Engine, "commit", slow_commit)
    starter = threading.Thread(target=start_second, daemon=True)
    starter.start()
    try:
        migrate_here(url)
    finally:
        event.remove(Engine, "commit", slow_commit)
        committing.set()
        starter.join(150)
    if not second:
        raise AssertionError("the first migration never committed")
    return second[0]
