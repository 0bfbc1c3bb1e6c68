"""Declarative saga definitions: an ordered list of steps, each a command, the replies that
end it, and the command that undoes it.

Definitions hold no state and no I/O, so tools (docs, the CLI) can list and draw them.
What a saga does when it ends (settle the order it was for) is the definition's ``on_end``;
the data it must not keep (a payment token) is named in ``secret_keys``.
Builders receive the saga's data (a JSON object) and return a command contract: anything
with ``subject()``, ``message_type()`` and ``to_payload()``, which every
``contracts.base.Command`` has. The chassis does not import the contracts package.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chassis.messaging.outbox import ContractLike

if TYPE_CHECKING:
    from chassis.db import Tx
    from chassis.saga.store import SagaInstance

Data = dict[str, Any]


# A command contract (what ``chassis.messaging.outbox.stage`` takes).
CommandLike = ContractLike


CommandBuilder = Callable[[Data], CommandLike]
# A reply handler gets the saga data and the reply's payload; it returns the keys to merge
# into the data (a payment id, a tracking number, a reason) or None.
ReplyHandler = Callable[[Data, dict[str, Any]], Mapping[str, Any] | None]




@dataclass(frozen=True)
class SagaEnd:
    """How a saga ended, as its definition's ``on_end`` is told."""

    status: str  # COMPLETED, COMPENSATED or FAILED: the instance's status
    at: datetime  # the engine's clock, the time the history records
    cause: str  # "reply" (a reply ended it) or "deadline" (its step timed out)
    causation_id: str | None  # the reply's message id; None when a deadline ended it
    failure: Mapping[str, Any] | None = None  # step and reason, unless COMPLETED


# Runs in the transaction that ends the saga, after its secret keys left the data and before
# the instance is saved: whatever it writes or stages commits with the end, or not at all
# (a reply is retried, a reconciler round is retried at the next tick). What it changes in
# ``instance.data`` is saved too.
EndHook = Callable[["Tx", "SagaInstance", SagaEnd], Awaitable[None]]


def _keep(_data: Data, _payload: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class Step:
    name: str
    command: CommandBuilder
    success: Mapping[str, ReplyHandler | None]
    failure: Mapping[str, ReplyHandler | None] = field(default_factory=dict)
    compensation: CommandBuilder | None = None
    deadline_s: float = 30.0
    max_resends: int = 2
    # Its command carries the next step's, which its receiver sends on success
    # (``chassis.messaging.forwarding``, ADR 0053): the orchestrator does not see this
    # step's success, only its failures and what the next step answers.
    forward: bool = False

    def __post_init__(self) -> None:
        if not self.success:
            raise ValueError(f"step {self.name!r} needs at least one success reply")
        if self.forward and any(h is not None for h in self.success.values()):
            # Its success never reaches the orchestrator, so it cannot change the data.
            raise ValueError(f"step {self.name!r} forwards: its success handlers must be None")
        both = set(self.success) & set(self.failure)
        if both:
            raise ValueError(f"step {self.name!r}: {sorted(both)} both succeed and fail")
        if self.deadline_s <= 0 or self.max_resends < 0:
            raise ValueError(f"step {self.name!r}: deadline_s > 0 and max_resends >= 0")

    def outcome_of(self, message_type: str) -> tuple[bool, ReplyHandler] | None:
        """(succeeded, handler) when this step awaits ``message_type``, else None."""
        if message_type in self.success:
            return True, self.success[message_type] or _keep
        if message_type in self.failure:
            return False, self.failure[message_type] or _keep
        return None


@dataclass(frozen=True)
class SagaDefinition:
    name: str
    steps: list[Step]
    description: str = ""
    on_end: EndHook | None = None
    # Keys of the data that hold secrets: never in the history, in ``history()`` or in an
    # error the engine lets out, and dropped from the data when the saga ends.
    secret_keys: Iterable[str] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "secret_keys", tuple(self.secret_keys))
        if not self.steps:
            raise ValueError(f"saga {self.name!r} has no steps")
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"saga {self.name!r}: step names must be unique")
        if self.steps[-1].forward:
            raise ValueError(f"saga {self.name!r}: the last step has no next step to forward")

    def chain_end(self, index: int) -> int:
        """The last step sent with step ``index``: the first from it that does not forward."""
        while self.steps[index].forward:
            index += 1
        return index

    def chain_head(self, index: int) -> int:
        """The step whose command carried step ``index``'s: the first of its chain."""
        while index > 0 and self.steps[index - 1].forward:
            index -= 1
        return index

    def chain_deadline_s(self, index: int) -> float:
        """How long the step at ``index`` and the steps it forwards to may take together."""
        return sum(s.deadline_s for s in self.steps[index:self.chain_end(index) + 1])

    def reply_types(self) -> list[str]:
        """Every message type some step awaits: what the orchestrator's consumer reads."""
        seen: dict[str, None] = {}
        for step in self.steps:
            for t in [*step.success, *step.failure]:
                seen.setdefault(t, None)
        return list(seen)

    def builders(self) -> list[CommandBuilder]:
        """Every builder of a command this definition may send: steps and compensations."""
        return [b for s in self.steps for b in (s.command, s.compensation) if b is not None]

    def describe(self) -> dict[str, Any]:
        """A plain, JSON-ready description for tools and docs."""
        return {
            "name": self.name,
            "description": self.description,
            "steps": [{
                "index": i,
                "name": s.name,
                "command": _type_name(s.command),
                "success": list(s.success),
                "failure": list(s.failure),
                "compensation": _type_name(s.compensation) if s.compensation else None,
                "deadline_s": s.deadline_s,
                "max_resends": s.max_resends,
                "forward": s.forward,
                # Sent with the command of step ``sent_with`` (itself, unless forwarded to);
                # awaited with the steps it forwards to for ``chain_deadline_s`` (ADR 0053).
                "sent_with": self.chain_head(i),
                "chain_deadline_s": self.chain_deadline_s(i),
            } for i, s in enumerate(self.steps)],
        }

    def to_mermaid(self) -> str:
        from chassis.saga.diagram import mermaid

        return mermaid(self.describe())


def _returned(builder: CommandBuilder) -> tuple[Any, ...]:
    """What a builder's return annotation names: its class, or a union's members; raises when
    the annotation does not resolve."""
    annotation = typing.get_type_hints(builder).get("return")
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def command_subjects(builders: Iterable[CommandBuilder]) -> list[str]:
    """The subjects of the commands ``builders`` may return, read from their return
    annotations (a command class, or a union of versions of one): what the orchestrator must
    be allowed to publish, and nothing more (its broker permissions, ADR 0056). A builder that
    names no command class is refused: its command could not be allowed beforehand."""
    subjects: set[str] = set()
    for builder in builders:
        try:
            classes = _returned(builder)
        except Exception as exc:  # an annotation that does not resolve
            raise ValueError(f"command builder {builder!r}: its return annotation does not "
                             f"resolve ({exc})") from exc
        found = [c.subject() for c in classes if callable(getattr(c, "subject", None))]
        if not found or len(found) != len(classes):
            raise ValueError(f"command builder {builder!r} must be annotated with the command "
                             f"class(es) it returns, not {classes!r}")
        subjects.update(found)
    return sorted(subjects)


def _type_name(builder: CommandBuilder) -> str:
    """The command's message type, read from the builder's return annotation (definitions
    are drawn without saga data, so the builder cannot be called); else its name."""
    try:
        classes = _returned(builder)
    except Exception:  # an unresolvable annotation: fall back to the name
        classes = ()
    message_type = getattr(classes[0], "message_type", None) if len(classes) == 1 else None
    if callable(message_type):
        return str(message_type())
    return str(getattr(builder, "saga_command", None) or getattr(builder, "__name__", builder))
