"""Admission control: new orders wait outside while too many sagas are running.

Under overload every accepted order joins a backlog the platform drains at its own pace, so
time to terminal grows for everyone (35 s at twice the sustainable rate, docs/saga.md). Past
``limit`` running sagas, a new order is refused at once with 503 and Retry-After, before
identity or catalog are asked anything: the customer learns it now instead of after a long
wait, and the orders already accepted keep their pace. A retry of an order already accepted
(same Idempotency-Key) is still answered.

The count is read every ``interval_s`` by each instance (one indexed count over the running
sagas of every instance), so a burst can overshoot the limit by what arrives meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from chassis.db import Database
from chassis.errors import ServiceUnavailable
from chassis.saga import count_running_now
from prometheus_client import CollectorRegistry

from orders.metrics import REFUSED_OVERLOAD, SAGAS_RUNNING
from orders.service_layer.saga import DEFINITIONS


class Admission:
    def __init__(self, limit: int, registry: CollectorRegistry) -> None:
        self.limit = limit  # 0: no limit
        self.running = 0
        self._refused = REFUSED_OVERLOAD.counter(registry)
        self._running = SAGAS_RUNNING.gauge(registry)

    def admit(self) -> None:
        """Raise 503 (Retry-After) when the last count reached the limit."""
        if self.limit and self.running >= self.limit:
            self._refused.inc()
            raise ServiceUnavailable(
                f"{self.running} orders are in progress (the limit is {self.limit}); "
                "try again in a few seconds", headers={"Retry-After": "5"})

    async def refresh(self, db: Database) -> int:
        self.running = await count_running_now(db, [d.name for d in DEFINITIONS])
        self._running.set(self.running)
        return self.running


def admission_counter(db: Database, admission: Admission) -> Callable[[], Awaitable[None]]:
    """The background round that refreshes the count (every ``admission_refresh_s``); a
    failed read keeps the last count."""
    async def count() -> None:
        await admission.refresh(db)

    return count
