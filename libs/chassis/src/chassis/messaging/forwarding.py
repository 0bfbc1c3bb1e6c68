"""A forwarded saga step: a command that carries the next step's command (ADR 0053).

An orchestrator that asks A, waits for A's answer, then asks B spends a message and a
transaction of its own on every answer. When B always follows A's success, A's command can
carry B's (a routing slip): the header ``Mercato-Then`` holds B's subject, type and payload,
and the types of A's events that mean success. The receiver's chassis sends B, in the
transaction of A's handler, when the handler stages one of those events; a failure event
sends nothing, and the orchestrator, which awaits A's failures and B's answers, undoes
what was done. The success event still goes out to whoever reads it, marked
``Mercato-Forwarded`` (the type of the command it sent on), so that the orchestrator's
consumer can ack it without a transaction (``ConsumerSpec.skip_forwarded``).

Only a command that names the next command's subject in its service's ``Messaging.sends``
can be forwarded: the broker refuses anything else (``chassis.broker_permissions``). The
next command's ids and payload come from the orchestrator, as if it had sent it: a
re-sent first command is re-announced by its receiver and sends the next command again,
under a fresh message id, and the next receiver is idempotent by the ids it carries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson

from chassis.broker_permissions import subject_matches
from chassis.messaging.envelope import Envelope, PoisonMessage


@dataclass(frozen=True, slots=True)
class Forward:
    """The next command, as a forwarded command carries it."""

    on: tuple[str, ...]  # the receiver's event types that send it (its step's success)
    subject: str
    message_type: str
    payload: dict[str, Any]
    then: str | None = None  # the command after it, forwarded by its own receiver

    def encode(self) -> str:
        body: dict[str, Any] = {"on": list(self.on), "subject": self.subject,
                                "type": self.message_type, "payload": self.payload}
        if self.then:
            body["then"] = self.then
        return orjson.dumps(body).decode()

    @classmethod
    def decode(cls, raw: str) -> Forward:
        """The header's command, or PoisonMessage (its message can never be handled)."""
        try:
            body = orjson.loads(raw)
            on, subject, message_type = body["on"], body["subject"], body["type"]
            payload, then = body["payload"], body.get("then")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise PoisonMessage(f"Mercato-Then is not a forwarded command: {exc}") from None
        if not (isinstance(on, list) and on and all(isinstance(t, str) for t in on)
                and isinstance(subject, str) and subject and isinstance(message_type, str)
                and message_type and isinstance(payload, dict)
                and (then is None or isinstance(then, str))):
            raise PoisonMessage("Mercato-Then is not a forwarded command")
        return cls(tuple(on), subject, message_type, payload, then)


@dataclass(slots=True)
class _Pending:
    forward: Forward | None
    correlation_id: str | None


# The forward of the command whose handler is running (set by the inbox consumer).
_pending: ContextVar[_Pending | None] = ContextVar("mercato_forward", default=None)


@contextlib.contextmanager
def receiving(envelope: Envelope, may_send: Iterable[str] | None = None) -> Iterator[None]:
    """Around a handler: what it stages may send the command's forward (``take``).

    ``may_send``: the subjects this service may publish commands to (its
    ``Messaging.sends``; None: any). A forward to another subject is a poison message: the
    broker would refuse its publish, and the outbox row would wait forever."""
    if envelope.then is None:
        yield
        return
    forward = Forward.decode(envelope.then)
    if may_send is not None and not any(subject_matches(p, forward.subject) for p in may_send):
        raise PoisonMessage(f"{envelope.message_type} asks for {forward.subject} to be sent, "
                            "which this service may not publish")
    token = _pending.set(_Pending(forward, envelope.correlation_id))
    try:
        yield
    finally:
        _pending.reset(token)


def take(message_type: str) -> tuple[Forward, str | None] | None:
    """The forward to send with an event of ``message_type`` the handler stages, and the
    correlation id of the command that carried it; once per handler, None otherwise."""
    pending = _pending.get()
    if pending is None or pending.forward is None or message_type not in pending.forward.on:
        return None
    forward, pending.forward = pending.forward, None
    return forward, pending.correlation_id
