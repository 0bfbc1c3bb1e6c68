"""The sender: background tasks in every instance (``chassis.background``) mailing queued
notifications. Instances share the work safely: each round claims with SKIP LOCKED, under the
instance's name, and a heartbeat beside it tells the others the claims are still held (see
the repository)."""

from __future__ import annotations

from datetime import timedelta

from chassis.background import BackgroundTasks
from chassis.db import Database

from notifications.adapters.smtp import Mailer
from notifications.domain.model import RetryPolicy
from notifications.service_layer.handlers import beat, register_sender, retire_sender, send_due


class Sender:
    """The instance ``me``'s sender: its first round registers (releasing what a dead
    predecessor under ``me`` held), every round sends what is due and asks for the next at
    once while it claims something (the next email of an order becomes claimable when the one
    before is sent); a heartbeat of its own beats while a round waits on a slow SMTP server;
    at shutdown it retires (a clean stop: nobody needs to wait on its beat)."""

    def __init__(self, db: Database, mailer: Mailer, policy: RetryPolicy, *, me: str,
                 batch_size: int = 20, lease: timedelta = timedelta(seconds=60),
                 stale_after: timedelta = timedelta(seconds=10),
                 order_wait: timedelta = timedelta(seconds=120)) -> None:
        self._db, self._mailer, self._policy, self.me = db, mailer, policy, me
        self._batch_size, self._lease = batch_size, lease
        self._stale_after, self._order_wait = stale_after, order_wait
        self._registered = False
        self._retiring = False

    def declare(self, tasks: BackgroundTasks, *, interval_s: float,
                stop_timeout_s: float = 0.0) -> None:
        tasks.every("sender", interval_s, self.send_round, on_stop=self.retire,
                    stop_timeout_s=stop_timeout_s)
        tasks.every("sender-heartbeat", self._stale_after.total_seconds() / 5, self.beat)

    async def send_round(self) -> bool:
        if not self._registered:
            await register_sender(self._db, self.me)
            self._registered = True
        done = await send_due(self._db, self._mailer, self._policy, me=self.me,
                              limit=self._batch_size, lease=self._lease,
                              stale_after=self._stale_after, order_wait=self._order_wait)
        return bool(done.claimed)

    async def beat(self) -> None:
        if not self._retiring:  # a beat after the retirement would bring the row back
            await beat(self._db, self.me)

    async def retire(self) -> None:
        self._retiring = True
        try:
            await retire_sender(self._db, self.me)
        finally:
            close = getattr(self._mailer, "close_connection", None)  # a kept SMTP connection
            if close is not None:                                    # says QUIT
                await close()
