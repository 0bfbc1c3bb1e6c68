"""The platform's memory total counts a shared page once (PSS), where RSS counts it per
process: measured on real processes sharing a real mapping."""

from __future__ import annotations

import mmap
import os
import signal
import time

import pytest
from mercato.runtime.memory import footprint, tree

SHARED = 64 << 20  # bytes every child maps and touches


def test_pss_counts_a_page_shared_by_four_processes_once_and_rss_four_times() -> None:
    if not os.path.exists("/proc/self/smaps_rollup"):
        pytest.skip("PSS needs Linux's smaps_rollup")
    area = mmap.mmap(-1, SHARED, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    area.write(b"x" * SHARED)  # touched: resident in the parent and in every child
    kids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:  # child: touch the shared pages, then wait to be measured
            sum(area[i] for i in range(0, SHARED, 4096))
            time.sleep(60)
            os._exit(0)
        kids.append(pid)
    try:
        time.sleep(1.0)  # the children have read every page
        assert tree([os.getpid()]) >= {os.getpid(), *kids}
        together = footprint([*kids, os.getpid()])
        # The area is resident in all five: RSS counts it five times, PSS once, so the two
        # differ by (at least) four copies of it ...
        assert together.rss - together.pss > 4 * SHARED * 0.9
        # ... and PSS still holds the one copy.
        assert together.pss > SHARED
        assert together.processes == 5
    finally:
        for pid in kids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        area.close()
