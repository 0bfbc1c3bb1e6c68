"""The message envelope: what travels in NATS headers beside a contract's JSON body.

The message id is a UUIDv7 (time-ordered, so outbox and inbox indexes stay append-mostly).
It is sent twice: as ``Nats-Msg-Id`` so JetStream drops duplicates inside its window, and as
``Mercato-Message-Id``, which the inbox uses and which survives a dead-letter replay (that
one is republished under a fresh ``Nats-Msg-Id`` so the broker does not drop it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import orjson
import uuid_utils
from opentelemetry import propagate
from pydantic import BaseModel, ValidationError

from chassis.clock import utc_now

H_NATS_MSG_ID = "Nats-Msg-Id"
H_MESSAGE_ID = "Mercato-Message-Id"
H_TYPE = "Mercato-Type"  # "<name>.v<version>", e.g. "ProductCreated.v1"
H_CORRELATION = "Mercato-Correlation-Id"
H_CAUSATION = "Mercato-Causation-Id"
H_OCCURRED_AT = "Mercato-Occurred-At"
# A saga's forwarded step (``chassis.messaging.forwarding``): on a command, the next step's
# command for its receiver to send on success; on an event, the command it was sent with.
H_THEN = "Mercato-Then"
H_FORWARDED = "Mercato-Forwarded"
H_TRACEPARENT = "traceparent"
H_TRACESTATE = "tracestate"


class PoisonMessage(ValueError):
    """A message no release can ever handle as it is (bad JSON, a payload its own contract
    rejects): dead-lettered on its first delivery, since retrying cannot change the outcome."""


M = TypeVar("M", bound=BaseModel)


def parse_payload(model: type[M], envelope: Envelope) -> M:
    """The message's contract, or PoisonMessage (dead-lettered at once).

    Only the error count is reported: a payload may hold a card number or an address, and
    the error text ends up in logs and dead-letter headers.
    """
    try:
        return model.model_validate(envelope.payload)
    except ValidationError:
        raise PoisonMessage(f"{envelope.message_type}: invalid payload") from None


def new_message_id() -> uuid.UUID:
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


def current_trace_headers() -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {k: v for k, v in carrier.items() if k in (H_TRACEPARENT, H_TRACESTATE)}


@dataclass(frozen=True, slots=True)
class Envelope:
    message_id: uuid.UUID
    message_type: str
    subject: str
    payload: dict[str, Any]
    occurred_at: datetime
    correlation_id: str | None = None
    causation_id: str | None = None
    trace: dict[str, str] = field(default_factory=dict)
    then: str | None = None  # H_THEN: the forwarded next command, JSON
    forwarded: str | None = None  # H_FORWARDED: the type of the command this event sent on

    @property
    def name(self) -> str:
        return self.message_type.rsplit(".v", 1)[0]

    @property
    def version(self) -> int:
        try:
            return int(self.message_type.rsplit(".v", 1)[1])
        except (IndexError, ValueError):
            return 0

    @classmethod
    def new(cls, subject: str, message_type: str, payload: dict[str, Any], *,
            correlation_id: str | None = None, causation_id: str | None = None,
            then: str | None = None, forwarded: str | None = None) -> Envelope:
        return cls(message_id=new_message_id(), message_type=message_type, subject=subject,
                   payload=payload, occurred_at=utc_now(),
                   correlation_id=correlation_id, causation_id=causation_id,
                   trace=current_trace_headers(), then=then, forwarded=forwarded)

    def headers(self) -> dict[str, str]:
        h = {H_NATS_MSG_ID: str(self.message_id), H_MESSAGE_ID: str(self.message_id),
             H_TYPE: self.message_type, H_OCCURRED_AT: self.occurred_at.isoformat()}
        if self.correlation_id:
            h[H_CORRELATION] = self.correlation_id
        if self.causation_id:
            h[H_CAUSATION] = self.causation_id
        if self.then:
            h[H_THEN] = self.then
        if self.forwarded:
            h[H_FORWARDED] = self.forwarded
        h.update(self.trace)
        return h

    def body(self) -> bytes:
        return orjson.dumps(self.payload)

    @classmethod
    def decode(cls, subject: str, headers: dict[str, str] | None, data: bytes) -> Envelope:
        """Parse a delivered message; raise PoisonMessage when it can never be handled."""
        h = headers or {}
        raw_id = h.get(H_MESSAGE_ID) or h.get(H_NATS_MSG_ID)
        message_type = h.get(H_TYPE)
        if not raw_id or not message_type:
            raise PoisonMessage("message id or type header missing")
        try:
            message_id = uuid.UUID(raw_id)
        except ValueError as exc:
            raise PoisonMessage(f"message id {raw_id!r} is not a UUID") from exc
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise PoisonMessage(f"body is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise PoisonMessage("body is not a JSON object")
        try:
            occurred_at = datetime.fromisoformat(h[H_OCCURRED_AT])
        except (KeyError, ValueError):
            occurred_at = utc_now()
        return cls(message_id=message_id, message_type=message_type, subject=subject,
                   payload=payload, occurred_at=occurred_at,
                   correlation_id=h.get(H_CORRELATION), causation_id=h.get(H_CAUSATION),
                   trace={k: h[k] for k in (H_TRACEPARENT, H_TRACESTATE) if k in h},
                   then=h.get(H_THEN), forwarded=h.get(H_FORWARDED))
