"""A saga's full story for operators and tools: its state, its trace, every event in order."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from opentelemetry import propagate, trace

from chassis.db import Database, Tx
from chassis.saga import store
from chassis.saga.secrets import Redactor
from chassis.saga.store import SagaInstance


@dataclass(frozen=True)
class SagaEvent:
    id: int
    at: datetime
    elapsed_ms: float  # since the saga started: where the time went, at a glance
    kind: str
    step: str | None
    message_type: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class SagaHistory:
    instance: SagaInstance
    trace_id: str | None
    events: list[SagaEvent]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (times as ISO strings) for an admin endpoint or the CLI."""
        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, uuid.UUID):
                return str(value)
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value

        return plain({"instance": asdict(self.instance), "trace_id": self.trace_id,
                      "events": [asdict(e) for e in self.events]})


def trace_id_of(trace_context: dict[str, str]) -> str | None:
    ctx = trace.get_current_span(propagate.extract(trace_context)).get_span_context()
    return format(ctx.trace_id, "032x") if ctx.trace_id else None


async def history(session: Tx, saga_id: uuid.UUID, *,
                  secret_keys: Iterable[str] = ()) -> SagaHistory | None:
    """The saga and its events, with ``secret_keys`` (and their values, wherever quoted)
    redacted: a saga still running holds them in its data. ``SagaEngine.history`` passes its
    definitions' keys."""
    inst = await store.load(session, saga_id)
    if inst is None:
        return None
    secrets = Redactor(secret_keys, inst.data)
    started = inst.created_at
    events = [SagaEvent(id=e["id"], at=e["at"],
                        elapsed_ms=round((e["at"] - started).total_seconds() * 1000, 3),
                        kind=e["kind"], step=e["step"], message_type=e["message_type"],
                        detail=secrets.value(e["detail"]))
              for e in await store.events(session, saga_id)]
    return SagaHistory(instance=replace(inst, data=secrets.value(inst.data)),
                       trace_id=trace_id_of(inst.trace_context), events=events)


async def record_event(session: Tx, saga_id: uuid.UUID, kind: str, *,
                       at: datetime, detail: dict[str, Any] | None = None) -> None:
    """Add what the orchestrating service did about a saga (settled its order, was asked to
    cancel) to the saga's history, in the caller's transaction."""
    await store.record(session, saga_id, at, kind, detail=detail)


async def count_running(session: Tx, saga_names: Iterable[str]) -> int:
    """How many sagas of these kinds are running now (one indexed count)."""
    return await store.count_running(session, list(saga_names))


async def count_running_now(db: Database, saga_names: Iterable[str]) -> int:
    """``count_running`` as a statement of its own, with no transaction around it."""
    return await store.count_running_now(db, list(saga_names))
