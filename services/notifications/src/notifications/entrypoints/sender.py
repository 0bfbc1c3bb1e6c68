"""The sender: a background task in every instance mailing queued notifications. Instances
share the work safely (each round claims with SKIP LOCKED and a lease)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog
from chassis.db import Database

from notifications.adapters.smtp import Mailer
from notifications.domain.model import RetryPolicy
from notifications.service_layer.handlers import send_due

log = structlog.get_logger("notifications.sender")


async def run_sender(db: Database, stop: asyncio.Event, mailer: Mailer, policy: RetryPolicy, *,
                     interval_s: float, batch_size: int = 20,
                     lease: timedelta = timedelta(seconds=60)) -> None:
    """A round now, then every ``interval_s`` until ``stop``; a full batch goes again at once."""
    while not stop.is_set():
        try:
            while not stop.is_set():
                done = await send_due(db, mailer, policy, limit=batch_size, lease=lease)
                if done.claimed < batch_size:
                    break
        except Exception as exc:  # the next round retries; a hiccup must not end the loop
            log.warning("sender_round_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
    close = getattr(mailer, "close_connection", None)  # a kept SMTP connection says QUIT
    if close is not None:
        await close()
