"""The expiry sweep: a background task in every instance, releasing reservations whose
deadline passed. Instances share the work safely (the sweep claims with SKIP LOCKED)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

import structlog
from chassis.clock import utc_now
from chassis.db import Database

from inventory.service_layer.handlers import sweep_expired

log = structlog.get_logger("inventory.expiry")


async def run_expiry(db: Database, stop: asyncio.Event, *, interval_s: float,
                     batch_size: int = 100,
                     clock: Callable[[], datetime] = utc_now) -> None:
    """Sweep now, then every ``interval_s`` until ``stop``; a full batch sweeps again at once."""
    while not stop.is_set():
        try:
            while not stop.is_set():
                released = await sweep_expired(db.unit_of_work(), now=clock(), limit=batch_size)
                if released < batch_size:
                    break
        except Exception as exc:  # the next round retries; a hiccup must not end the loop
            log.warning("expiry_sweep_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
