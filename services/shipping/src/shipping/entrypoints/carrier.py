"""The simulated carrier: a background task in every instance, moving shipments along their
route when their time in a status is up. Instances share the work safely (each round claims
with SKIP LOCKED)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

import structlog
from chassis.clock import utc_now
from chassis.db import Database

from shipping.domain.model import Timetable
from shipping.service_layer.handlers import sweep_carrier

log = structlog.get_logger("shipping.carrier")


async def run_carrier(db: Database, stop: asyncio.Event, timetable: Timetable, *,
                      interval_s: float, batch_size: int = 100,
                      clock: Callable[[], datetime] = utc_now) -> None:
    """A round now, then every ``interval_s`` until ``stop``; a full batch goes again at once."""
    while not stop.is_set():
        try:
            while not stop.is_set():
                moved = await sweep_carrier(db.unit_of_work(), timetable, now=clock(),
                                            limit=batch_size)
                if moved < batch_size:
                    break
        except Exception as exc:  # the next round retries; a hiccup must not end the loop
            log.warning("carrier_round_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
