"""The simulated carrier: a background task in every instance (``chassis.background``), moving
shipments along their route when their time in a status is up. Instances share the work
safely (each round claims with SKIP LOCKED)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from chassis.clock import utc_now
from chassis.db import Database

from shipping.domain.model import Timetable
from shipping.service_layer.handlers import sweep_carrier


def carrier_round(db: Database, timetable: Timetable, *, batch_size: int = 100,
                  clock: Callable[[], datetime] = utc_now) -> Callable[[], Awaitable[bool]]:
    """One round: move up to ``batch_size`` shipments that are due; True (go again at once)
    when the batch was full."""
    async def move() -> bool:
        moved = await sweep_carrier(db.unit_of_work(), timetable, now=clock(),
                                    limit=batch_size)
        return moved >= batch_size

    return move
