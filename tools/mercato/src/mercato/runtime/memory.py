"""How much memory the platform takes: every process of it once, shared pages once.

RSS counts a page in every process that maps it: PostgreSQL's shared buffers in each
backend, the interpreter's pages in every forked worker. Summed over a platform it counts the
same memory many times. PSS (proportional set size, Linux ``smaps_rollup``) splits each
shared page between the processes that map it, so the sum over a set of processes counts
every page they hold exactly once: the figure issue 17's memory target is about ("the whole
platform idle, PostgreSQL counted once for shared memory").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import psutil


@dataclass(frozen=True, slots=True)
class Footprint:
    rss: int  # bytes: what each process maps, summed (shared pages counted per process)
    pss: int  # bytes: each page once (shared ones split between their processes)
    processes: int


def tree(roots: Iterable[int]) -> set[int]:
    """The live processes of ``roots`` and all their descendants."""
    found: set[int] = set()
    for pid in roots:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            found.add(p.pid)
            found.update(c.pid for c in p.children(recursive=True))
    return found


def footprint(pids: Iterable[int]) -> Footprint:
    """RSS and PSS summed over ``pids`` (each counted once; gone ones skipped)."""
    rss = pss = n = 0
    for pid in set(pids):
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            info = p.memory_full_info()  # reads smaps_rollup on Linux
            rss += info.rss
            pss += getattr(info, "pss", info.rss)  # pss exists on Linux only
            n += 1
    return Footprint(rss=rss, pss=pss, processes=n)
