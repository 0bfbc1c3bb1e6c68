"""The expiry sweep: a background task in every instance (``chassis.background``), releasing
reservations whose deadline passed. Instances share the work safely (the sweep claims with
SKIP LOCKED)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from chassis.clock import utc_now
from chassis.db import Database

from inventory.service_layer.handlers import sweep_expired


def expiry_sweep(db: Database, *, batch_size: int = 100,
                 clock: Callable[[], datetime] = utc_now) -> Callable[[], Awaitable[bool]]:
    """One round: release up to ``batch_size`` expired reservations; True (sweep again at
    once) when the batch was full."""
    async def sweep() -> bool:
        released = await sweep_expired(db.unit_of_work(), now=clock(), limit=batch_size)
        return released >= batch_size

    return sweep
