"""The orchestrator: start sagas, apply replies, re-drive overdue steps.

Every transition happens in the caller's transaction (the request's, or the inbox
consumer's): the new state, its history rows and the next command (staged in the outbox)
commit together or not at all.

Concurrency: a reply loads its instance ``FOR UPDATE``, so replies to one saga apply one at
a time; the reconciler claims overdue rows with ``FOR UPDATE SKIP LOCKED``, so it never waits
for (or doubles up with) a reply handler or another reconciler. The ``version`` column is
checked on every write as a second line of defence.

Compensation is fire-and-forget: on failure every done step's compensation is staged, in
reverse order, in the failing transaction, and the saga is COMPENSATED at once. The outbox
guarantees those commands are delivered; receivers apply them idempotently and must not
refuse them (releasing stock, voiding a payment, cancelling a shipment always succeed or are
retried by the receiver). Awaiting their replies would add states without adding safety;
late replies to compensations are recorded in the history and otherwise ignored.

Forwarded steps (ADR 0053): a step marked ``forward`` sends its command with the next
step's inside (``chassis.messaging.forwarding``), and its receiver sends that one on success.
The engine then awaits the steps sent together as one: the failures of each, the success of
the last; their deadlines add up; a resend re-sends the first (its receiver re-announces
and forwards again); a timeout undoes them all. A failure of a later one means the earlier
ones succeeded: the engine undoes those before it, as for any failure.

Ending: every path that ends a saga -- the last success reply (COMPLETED), a failure reply
or a command that cannot be built (COMPENSATED), a deadline past its last resend
(COMPENSATED), a compensation that cannot be built (FAILED) -- goes through ``_end``, which
drops the definition's ``secret_keys`` from the data and runs its ``on_end`` hook in the
same transaction. Secrets are also kept out of every history row and every error the
engine lets out (``chassis.saga.secrets``).

No reply is ignored unseen (``chassis.messaging.consumer``):
- a reply for a saga that does not exist (its id names no saga of this orchestrator) is
  dead-lettered: nothing here can apply it, and an operator may need it (the saga's rows were
  lost or restored from an older backup, a receiver answered with the wrong correlation id,
  someone sent the command by hand). It is logged and counted as ``unknown_saga``.
- a reply the saga no longer awaits is recorded in its history, logged and counted, not
  dead-lettered: ``late_reply`` (what an earlier step awaited: the answer to a re-sent command
  after the first answer moved the saga on -- normal), ``saga_ended`` (the saga completed or
  compensated meanwhile -- normal after a timeout), or ``not_awaited`` (a step not reached
  yet, or a type no step awaits: an anomaly, logged as a warning). Replaying any of them
  later could only apply an answer to a question the saga has not asked, so they are kept in
  the history, not in the dead-letter stream.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from chassis.clock import utc_now
from chassis.db import Tx, after_commit
from chassis.messaging.consumer import UnknownMessageType, UnmatchedMessage, dropped
from chassis.messaging.envelope import Envelope, current_trace_headers
from chassis.messaging.forwarding import Forward
from chassis.messaging.outbox import stage
from chassis.saga import store
from chassis.saga.definition import CommandBuilder, SagaDefinition, SagaEnd, Step
from chassis.saga.history import SagaHistory, history
from chassis.saga.metrics import SagaMetrics
from chassis.saga.secrets import Redactor
from chassis.saga.store import SagaInstance, Status

log = structlog.get_logger("chassis.saga")
Clock = Callable[[], datetime]


class SagaEngine:
    def __init__(self, definitions: Iterable[SagaDefinition], *, clock: Clock = utc_now,
                 metrics: SagaMetrics | None = None) -> None:
        self.definitions = {d.name: d for d in definitions}
        self._clock = clock
        self.metrics: SagaMetrics | None = None
        if metrics is not None:
            self.observe(metrics)

    def observe(self, metrics: SagaMetrics) -> None:
        """Count transitions in ``metrics`` from now on (each once its transaction has
        committed). Separate from the constructor: the registry is the app's, made after
        the engine."""
        self.metrics = metrics
        for definition in self.definitions.values():
            metrics.declare(definition)

    def now(self) -> datetime:
        """The engine's clock: the time its history and deadlines are written in."""
        return self._clock()

    async def history(self, session: Tx, saga_id: uuid.UUID) -> SagaHistory | None:
        """``chassis.saga.history`` with the secret keys of every saga this engine runs
        redacted."""
        keys = {k for d in self.definitions.values() for k in d.secret_keys}
        return await history(session, saga_id, secret_keys=keys)

    def _count(self, session: Tx, counter: str, *labels: str) -> None:
        if self.metrics is not None:
            child = getattr(self.metrics, counter).labels(*labels)
            after_commit(session, child.inc)

    def handlers(self) -> dict[str, Callable[[Tx, Envelope], Any]]:
        """Handlers for a ``ConsumerSpec``: every reply type of every definition."""
        return {t: self.handle_reply for d in self.definitions.values() for t in d.reply_types()}

    async def start(self, session: Tx, definition: SagaDefinition,
                    saga_id: uuid.UUID, data: Mapping[str, Any], *,
                    causation_id: str | None = None) -> SagaInstance:
        """Insert the saga and stage its first command, in the caller's transaction.

        The definition's ``secret_keys`` of ``data`` (a payment token) are kept out of the
        history, which lives as long as the saga; the engine drops them from the data when
        the saga ends (a step's reply handler may drop them sooner)."""
        if definition.name not in self.definitions:
            self.definitions[definition.name] = definition
            if self.metrics is not None:
                self.metrics.declare(definition)
        now = self._clock()
        first = definition.steps[0]
        inst = SagaInstance(
            id=saga_id, saga_name=definition.name, status=Status.RUNNING, current_step=0,
            resends=0, data=dict(data), trace_context=current_trace_headers(),
            deadline_at=now + timedelta(seconds=definition.chain_deadline_s(0)), created_at=now,
            updated_at=now, version=1)
        await store.insert(session, inst)
        secrets = Redactor(definition.secret_keys, inst.data)
        await store.record(session, saga_id, now, "started",
                           detail={"data": secrets.omit(inst.data)})
        # A builder error here is the caller's bug: let it raise and roll the request back.
        with secrets.scrubbing():
            built, then = _build(definition, 0, inst.data)
            await self._stage(session, secrets, inst, first, built, "command_sent", now,
                              causation_id, then=then)
        self._count(session, "started", definition.name)
        return inst

    async def handle_reply(self, session: Tx,
                           envelope: Envelope) -> SagaInstance | None:
        """Apply a reply event (an inbox handler: runs in the consumer's transaction); the
        saga as it is now (locked until commit).

        Raises ``UnmatchedMessage`` (dead-lettered at once) when no saga has the reply's
        correlation id, and ``UnknownMessageType`` (retried: a newer instance may know it)
        when the saga is of a kind this engine does not define."""
        saga_id = _uuid(envelope.correlation_id)
        inst = await store.load(session, saga_id, lock=True) if saga_id else None
        if inst is None:
            raise UnmatchedMessage(
                "unknown_saga", f"{envelope.message_type} for saga "
                f"{envelope.correlation_id!r}, which does not exist here")
        definition = self.definitions.get(inst.saga_name)
        if definition is None:
            raise UnknownMessageType(f"saga {inst.id} is a {inst.saga_name!r} saga, which this "
                                     "release does not define")
        now = self._clock()
        secrets = Redactor(definition.secret_keys, inst.data)
        with secrets.scrubbing():
            await self._apply(session, definition, inst, envelope, now, secrets)
        return inst

    async def _apply(self, session: Tx, definition: SagaDefinition,
                     inst: SagaInstance, envelope: Envelope, now: datetime,
                     secrets: Redactor) -> None:
        step, outcome = None, None
        if inst.status == Status.RUNNING:
            # The current step and the steps sent with it (forwarded): whichever answers.
            for index in range(inst.current_step, definition.chain_end(inst.current_step) + 1):
                step = definition.steps[index]
                outcome = step.outcome_of(envelope.message_type)
                if outcome is not None:
                    if index > inst.current_step:  # the steps before it succeeded
                        inst.current_step, inst.resends = index, 0
                    break
            else:
                step = definition.steps[inst.current_step]
        if step is None or outcome is None:
            why, reason = _why_ignored(definition, inst, envelope.message_type)
            await store.record(session, inst.id, now, "reply", message_type=envelope.message_type,
                               step=step.name if step else None,
                               detail={"accepted": False, "why": why,
                                       "message_id": str(envelope.message_id)})
            dropped(reason, why, expected=reason != NOT_AWAITED)
            return
        succeeded, handler = outcome
        updates = dict(handler(inst.data, envelope.payload) or {})
        inst.data.update(updates)
        await store.record(session, inst.id, now, "reply", step=step.name,
                           message_type=envelope.message_type,
                           detail=secrets.value({"accepted": True, "succeeded": succeeded,
                                                 "message_id": str(envelope.message_id),
                                                 "updates": updates}))
        causation = str(envelope.message_id)
        if succeeded and step.forward:
            # Its receiver has sent the next step's command: wait for that one's answer.
            inst.current_step, inst.resends = inst.current_step + 1, 0
            inst.deadline_at = now + timedelta(
                seconds=definition.chain_deadline_s(inst.current_step))
        elif succeeded:
            await self._advance(session, definition, inst, now, causation, secrets)
        else:
            reason = str(updates.get("reason") or envelope.payload.get("reason")
                         or envelope.message_type)
            # A refusal means the step took no effect: undo only the steps before it.
            await self._compensate(session, definition, inst, now, causation, secrets,
                                   failure={"step": step.name, "reason": reason,
                                            "message_type": envelope.message_type},
                                   undo_through=inst.current_step - 1)
        await store.save(session, inst, now)

    async def tick(self, session: Tx, now: datetime | None = None, *,
                   limit: int = 100) -> int:
        """Re-send or give up on overdue steps; return how many sagas were driven.

        Each saga is driven in a savepoint, so one that cannot be (a bug in a builder) is
        logged and left for the next tick without holding back the others."""
        now = now or self._clock()
        claimed = await store.claim_overdue(session, now, list(self.definitions), limit)
        for inst in claimed:
            try:
                async with session.begin_nested():
                    await self._overdue(session, self.definitions[inst.saga_name], inst, now)
            except Exception:
                log.exception("saga_tick_failed", saga_id=str(inst.id), saga=inst.saga_name)
        return len(claimed)

    async def _overdue(self, session: Tx, definition: SagaDefinition,
                       inst: SagaInstance, now: datetime) -> None:
        secrets = Redactor(definition.secret_keys, inst.data)
        with secrets.scrubbing():
            await self._drive_overdue(session, definition, inst, now, secrets)

    async def _drive_overdue(self, session: Tx, definition: SagaDefinition,
                             inst: SagaInstance, now: datetime, secrets: Redactor) -> None:
        step = definition.steps[inst.current_step]
        if inst.resends < step.max_resends:
            inst.resends += 1
            # Each resend waits twice as long as the last: a reply that is late because the
            # receiver is behind must not be answered with more commands for it to work
            # through (under overload, fixed deadlines resent most commands twice).
            inst.deadline_at = now + timedelta(
                seconds=definition.chain_deadline_s(inst.current_step) * 2 ** inst.resends)
            try:
                built, then = _build(definition, inst.current_step, inst.data)
            except Exception as exc:
                raise _BuildError(str(exc)) from exc
            await self._stage(session, secrets, inst, step, built, "resent", now, None,
                              then=then, attempt=inst.resends + 1)
            self._count(session, "resends", definition.name, step.name)
        else:
            await store.record(session, inst.id, now, "timed_out", step=step.name,
                               detail={"resends": inst.resends})
            self._count(session, "timeouts", definition.name, step.name)
            # The command may have taken effect with its reply lost: undo this step too
            # (compensations are idempotent and receivers tolerate undoing nothing).
            # So may the steps it forwarded to.
            await self._compensate(session, definition, inst, now, None, secrets,
                                   failure={"step": step.name, "reason": "timed_out"},
                                   undo_through=definition.chain_end(inst.current_step))
        await store.save(session, inst, now)

    async def _advance(self, session: Tx, definition: SagaDefinition,
                       inst: SagaInstance, now: datetime, causation: str,
                       secrets: Redactor) -> None:
        inst.current_step += 1
        inst.resends = 0
        if inst.current_step == len(definition.steps):
            inst.status, inst.deadline_at = Status.COMPLETED, None
            await store.record(session, inst.id, now, "completed")
            self._count(session, "finished", definition.name, "completed")
            await self._end(session, definition, inst, now, causation, None)
            return
        step = definition.steps[inst.current_step]
        inst.deadline_at = now + timedelta(seconds=definition.chain_deadline_s(inst.current_step))
        try:
            built, then = _build(definition, inst.current_step, inst.data)
        except Exception as exc:
            # The data cannot make the next command (a contract change, a missing id):
            # nothing was asked of that step yet, so undo the ones before it.
            await self._compensate(session, definition, inst, now, causation, secrets,
                                   failure={"step": step.name, "reason": f"bad command: {exc}"},
                                   undo_through=inst.current_step - 1)
            return
        await self._stage(session, secrets, inst, step, built, "command_sent", now, causation,
                          then=then)

    async def _compensate(self, session: Tx, definition: SagaDefinition,
                          inst: SagaInstance, now: datetime, causation: str | None,
                          secrets: Redactor, *, failure: dict[str, Any],
                          undo_through: int) -> None:
        failure = secrets.value(failure)  # a reason may quote the data (a builder's error)
        inst.data["failure"] = failure
        inst.deadline_at = None
        # The span that turned the saga back (a refusal's reply, the reconciler's tick) is
        # where a trace view shows the failure.
        span = trace.get_current_span()
        span.set_status(trace.Status(trace.StatusCode.ERROR, str(failure.get("reason"))))
        span.add_event("saga.compensating", {"saga.id": str(inst.id),
                                             "saga.step": str(failure.get("step")),
                                             "saga.reason": str(failure.get("reason"))})
        broken: list[str] = []
        for i in range(undo_through, -1, -1):
            step = definition.steps[i]
            if step.compensation is None:
                continue
            try:
                await self._send(session, secrets, inst, step, step.compensation,
                                 "compensation_sent", now, causation)
            except _BuildError as exc:
                broken.append(secrets.text(f"{step.name}: {exc}"))
        if broken:
            # A compensation we cannot even build needs a person: FAILED, with the reason.
            inst.status = Status.FAILED
            await store.record(session, inst.id, now, "failed",
                               detail={**failure, "compensations_not_sent": broken})
        else:
            inst.status = Status.COMPENSATED
            await store.record(session, inst.id, now, "compensated", detail=failure)
        self._count(session, "finished", definition.name, inst.status.lower())
        await self._end(session, definition, inst, now, causation, failure)

    async def _end(self, session: Tx, definition: SagaDefinition,
                   inst: SagaInstance, now: datetime, causation: str | None,
                   failure: dict[str, Any] | None) -> None:
        """The one place a saga ends (see the module docstring)."""
        for key in definition.secret_keys:
            inst.data.pop(key, None)
        if definition.on_end is not None:
            await definition.on_end(session, inst, SagaEnd(
                status=inst.status, at=now, cause="reply" if causation else "deadline",
                causation_id=causation, failure=failure))

    async def _send(self, session: Tx, secrets: Redactor, inst: SagaInstance,
                    step: Step, builder: CommandBuilder, kind: str, now: datetime,
                    causation: str | None, **detail: Any) -> None:
        try:
            built = builder(inst.data)
        except Exception as exc:
            raise _BuildError(str(exc)) from exc
        await self._stage(session, secrets, inst, step, built, kind, now, causation, **detail)

    async def _stage(self, session: Tx, secrets: Redactor, inst: SagaInstance,
                     step: Step, built: Any, kind: str, now: datetime, causation: str | None,
                     *, then: Forward | None = None, **detail: Any) -> None:
        with _in_trace(inst.trace_context):
            envelope = await stage(session, built, correlation_id=str(inst.id),
                                   causation_id=causation,
                                   then=then.encode() if then else None)
        if then is not None:
            detail["forwards"] = _forwarded_types(then)
        await store.record(session, inst.id, now, kind, step=step.name,
                           message_type=envelope.message_type,
                           detail=secrets.value({"message_id": str(envelope.message_id),
                                                 "subject": envelope.subject, **detail}))


class _BuildError(Exception):
    pass


def _build(definition: SagaDefinition, index: int, data: Any) -> tuple[Any, Forward | None]:
    """The command of the step at ``index`` and, when it forwards, the next step's command
    (itself carrying the one after when that step forwards too)."""
    end = definition.chain_end(index)
    then: Forward | None = None
    for i in range(end, index, -1):  # innermost first
        built = definition.steps[i].command(data)
        then = Forward(on=tuple(definition.steps[i - 1].success), subject=built.subject(),
                       message_type=built.message_type(), payload=built.to_payload(),
                       then=then.encode() if then else None)
    return definition.steps[index].command(data), then


def _forwarded_types(then: Forward) -> list[str]:
    types = [then.message_type]
    while then.then:
        then = Forward.decode(then.then)
        types.append(then.message_type)
    return types


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


# Why a reply was not applied (the dropped-message reason; see the module docstring).
SAGA_ENDED, LATE_REPLY, NOT_AWAITED = "saga_ended", "late_reply", "not_awaited"


def _why_ignored(definition: SagaDefinition, inst: SagaInstance,
                 message_type: str) -> tuple[str, str]:
    """(what the history says, the dropped reason) for a reply the saga does not apply."""
    if inst.status != Status.RUNNING:
        return f"saga {inst.status.lower()}", SAGA_ENDED
    if any(s.outcome_of(message_type) for s in definition.steps[:inst.current_step]):
        return "late: an earlier step's reply (duplicate or after a resend)", LATE_REPLY
    return "not awaited by the current step (out of order)", NOT_AWAITED


@contextlib.contextmanager
def _in_trace(trace_context: dict[str, str]) -> Iterator[None]:
    """Stage within the saga's trace: keep the current span if it is already in that trace
    (a reply's consumer span), else attach the stored one (the reconciler has none)."""
    stored = propagate.extract(trace_context)
    stored_id = trace.get_current_span(stored).get_span_context().trace_id
    current_id = trace.get_current_span().get_span_context().trace_id
    if not stored_id or stored_id == current_id:
        yield
        return
    token = otel_context.attach(stored)
    try:
        yield
    finally:
        otel_context.detach(token)
