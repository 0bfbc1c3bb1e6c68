"""The reconciler loop: re-drives sagas whose current step is past its deadline.

It is what makes a lost message (a broker that lost an acknowledged publish, a reply that
never came, an orchestrator restarted mid-saga) end in a terminal state. Run it in every
orchestrator instance: claims use SKIP LOCKED, so instances share the work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import structlog

from chassis.db import Database
from chassis.saga.definition import SagaDefinition
from chassis.saga.engine import SagaEngine

log = structlog.get_logger("chassis.saga")


async def run_reconciler(db: Database, definitions: Iterable[SagaDefinition] | SagaEngine,
                         stop_event: asyncio.Event, interval_s: float = 1.0, *,
                         batch: int = 100) -> None:
    engine = definitions if isinstance(definitions, SagaEngine) else SagaEngine(definitions)
    backoff = interval_s
    while not stop_event.is_set():
        driven = 0
        try:
            async with db.unit_of_work() as uow:
                driven = await engine.tick(uow.session, limit=batch)
                await uow.commit()
            backoff = interval_s
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The database is away: keep trying, slower, rather than dying with the task.
            log.warning("saga_reconciler_failed", error=f"{type(exc).__name__}: {exc}")
            backoff = min(max(backoff * 2, interval_s), 30.0)
        if driven:
            log.info("saga_reconciler_drove", sagas=driven)
        if driven >= batch:
            continue  # more are waiting: do not sleep between full batches
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), backoff)
