"""The reconciler: re-drives sagas whose current step is past its deadline.

It is what makes a lost message (a broker that lost an acknowledged publish, a reply that
never came, an orchestrator restarted mid-saga) end in a terminal state. Run it in every
orchestrator instance as a background task (``ctx.background.every("saga-reconciler",
interval, reconciler(db, engine))``): claims use SKIP LOCKED, so instances share the work, and
a full batch asks for the next one at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from chassis.db import Database
from chassis.saga.engine import SagaEngine

log = structlog.get_logger("chassis.saga")


def reconciler(db: Database, engine: SagaEngine, *,
               batch: int = 100) -> Callable[[], Awaitable[bool]]:
    """One reconciler round for ``chassis.background``; True when more sagas are waiting."""
    async def reconcile() -> bool:
        async with db.unit_of_work() as uow:
            driven = await engine.tick(uow.session, limit=batch)
            await uow.commit()
        if driven:
            log.info("saga_reconciler_drove", sagas=driven)
        return driven >= batch

    return reconcile
