"""The one clock every service reads: now, timezone-aware, in UTC.

Plain Python with no I/O, so a service's domain model may import it. Code that must be
testable at a chosen instant takes a ``Clock`` argument defaulting to ``utc_now``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
