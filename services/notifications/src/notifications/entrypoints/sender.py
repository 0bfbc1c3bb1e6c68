"""The sender: a background task in every instance mailing queued notifications. Instances
share the work safely: each round claims with SKIP LOCKED, under the instance's name, and a
heartbeat beside it tells the others the claims are still held (see the repository)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog
from chassis.db import Database

from notifications.adapters.smtp import Mailer
from notifications.domain.model import RetryPolicy
from notifications.service_layer.handlers import beat, register_sender, retire_sender, send_due

log = structlog.get_logger("notifications.sender")


async def run_sender(db: Database, stop: asyncio.Event, mailer: Mailer, policy: RetryPolicy, *,
                     me: str, interval_s: float, batch_size: int = 20,
                     lease: timedelta = timedelta(seconds=60),
                     stale_after: timedelta = timedelta(seconds=10),
                     order_wait: timedelta = timedelta(seconds=120)) -> None:
    """Register (releasing what a dead predecessor under ``me`` held), then a round now and
    every ``interval_s`` until ``stop``; rounds follow each other at once while they claim
    something (the next email of an order becomes claimable when the one before is sent)."""
    heart = asyncio.create_task(_beat(db, stop, me, stale_after / 5), name="sender-heartbeat")
    try:
        while not stop.is_set():
            try:
                await register_sender(db, me)
                break
            except Exception as exc:  # the database is not there yet: try again shortly
                log.warning("sender_register_failed", error=f"{type(exc).__name__}: {exc}"[:300])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(interval_s, 1.0))
        while not stop.is_set():
            try:
                while not stop.is_set():
                    done = await send_due(db, mailer, policy, me=me, limit=batch_size,
                                          lease=lease, stale_after=stale_after,
                                          order_wait=order_wait)
                    if not done.claimed:
                        break
            except Exception as exc:  # the next round retries; a hiccup must not end the loop
                log.warning("sender_round_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
    finally:
        heart.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heart
    with contextlib.suppress(Exception):  # a clean stop: nobody needs to wait on our beat
        await retire_sender(db, me)
    close = getattr(mailer, "close_connection", None)  # a kept SMTP connection says QUIT
    if close is not None:
        await close()


async def _beat(db: Database, stop: asyncio.Event, me: str, every: timedelta) -> None:
    """Its own task: a round blocked on a slow SMTP server still beats, a dead process not."""
    while not stop.is_set():
        try:
            await beat(db, me)
        except Exception as exc:
            log.warning("sender_heartbeat_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every.total_seconds())
