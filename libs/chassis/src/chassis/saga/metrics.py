"""What an orchestrator's sagas look like on ``/metrics``.

Two kinds of numbers. Transitions (started, finished by status, step re-sends and time-outs)
are counted by the engine once the transaction that made them has committed
(``chassis.db.after_commit``): a consumer batch that rolls back and is handled again message
by message counts each transition once. The sagas running now, per step, and those past
their step's deadline are read by ``saga_sampler`` every few seconds with one query
over the running sagas only (the partial index of running sagas serves it), never per
message. A saga overdue for long is one nothing drives any more: the reconciler re-sends or
compensates within a second of a deadline, so ``saga_overdue_seconds`` staying high means
the reconciler is not running, cannot reach the database, or fails on that saga.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

import structlog
from prometheus_client import CollectorRegistry

from chassis import metric_catalogue as m
from chassis.clock import utc_now
from chassis.db import Database
from chassis.saga.definition import SagaDefinition

log = structlog.get_logger("chassis.saga")

SAMPLE_INTERVAL_S = 5.0

# Every running saga, whatever its name: one whose definition no instance knows any more is
# never driven, and must show. Served by ix_saga_instances_deadline (partial: RUNNING).
# ``now`` is the orchestrator's clock, the one the reconciler compares deadlines with.
# One statement, sent alone (no transaction around it: Database.fetch_once).
_RUNNING = (
    "SELECT saga_name, current_step, count(*) AS running, "
    "count(*) FILTER (WHERE deadline_at < $1) AS overdue, "
    "coalesce(extract(epoch FROM $1 - min(deadline_at)), 0) AS most_overdue_s "
    "FROM saga_instances WHERE status = 'RUNNING' GROUP BY saga_name, current_step")

FINISHED_STATUSES = ("completed", "compensated", "failed")


class SagaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.running = m.SAGA_RUNNING.gauge(registry)
        self.overdue = m.SAGA_OVERDUE.gauge(registry)
        self.overdue_seconds = m.SAGA_OVERDUE_SECONDS.gauge(registry)
        self.started = m.SAGA_STARTED.counter(registry)
        self.finished = m.SAGA_FINISHED.counter(registry)
        self.resends = m.SAGA_RESENDS.counter(registry)
        self.timeouts = m.SAGA_TIMEOUTS.counter(registry)
        self._running_seen: set[tuple[str, str]] = set()

    def declare(self, definition: SagaDefinition) -> None:
        """Every series of a definition at zero from the start: a counter whose first sample
        is already 1 shows no increase, so the first failed saga would raise no alert."""
        name = definition.name
        self.started.labels(name)
        for status in FINISHED_STATUSES:
            self.finished.labels(name, status)
        for step in definition.steps:
            self.resends.labels(name, step.name)
            self.timeouts.labels(name, step.name)
            self.running.labels(name, step.name).set(0)
        self.overdue.labels(name).set(0)
        self.overdue_seconds.labels(name).set(0)

    def set_running(self, definitions: Mapping[str, SagaDefinition],
                    rows: list[tuple[str, int, int, int, float]]) -> None:
        """Set the gauges from one sample: (saga, step index, running, overdue, seconds past
        the earliest deadline) per saga and step."""
        running: dict[tuple[str, str], int] = {}
        overdue: dict[str, int] = {}
        worst: dict[str, float] = {}
        for saga, index, count, late, past_s in rows:
            steps = definitions[saga].steps if saga in definitions else []
            step = steps[index].name if 0 <= index < len(steps) else str(index)
            running[(saga, step)] = running.get((saga, step), 0) + count
            overdue[saga] = overdue.get(saga, 0) + late
            worst[saga] = max(worst.get(saga, 0.0), max(past_s, 0.0) if late else 0.0)
        # A step no saga waits in any more reads 0, not its last count.
        for key in self._running_seen - running.keys():
            self.running.labels(*key).set(0)
        for key, count in running.items():
            self.running.labels(*key).set(count)
        self._running_seen |= running.keys()
        for saga in set(definitions) | overdue.keys():
            self.overdue.labels(saga).set(overdue.get(saga, 0))
            self.overdue_seconds.labels(saga).set(worst.get(saga, 0.0))


async def sample_sagas(db: Database, definitions: Mapping[str, SagaDefinition],
                       metrics: SagaMetrics, *, clock: Callable[[], datetime] = utc_now) -> None:
    rows = await db.fetch_once(_RUNNING, clock())
    metrics.set_running(definitions, [(r[0], int(r[1]), int(r[2]), int(r[3]), float(r[4]))
                                      for r in rows])


def saga_sampler(db: Database, definitions: Mapping[str, SagaDefinition],
                 metrics: SagaMetrics, *,
                 clock: Callable[[], datetime] = utc_now) -> Callable[[], Awaitable[None]]:
    """One sampling round for ``chassis.background`` (every ``SAMPLE_INTERVAL_S``); a failed
    round (the database away) keeps the last values."""
    async def sample() -> None:
        await sample_sagas(db, definitions, metrics, clock=clock)

    return sample
