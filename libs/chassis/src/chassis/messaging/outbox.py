"""Writing to the outbox inside the caller's unit of work.

``stage(session, contract, correlation_id=..., causation_id=...)`` is how a service publishes
an event or sends a command: the contract (anything with ``subject()``, ``message_type()``
and ``to_payload()``, which every ``contracts.base.Contract`` has; the chassis does not
import the contracts package) names its own subject and type. ``stage_message`` is the same
for a message that has no contract class (tools, tests of the outbox itself).

Staging writes the message row in the same transaction as the state change: if the
transaction commits, the message is published (at least once); if it rolls back, neither the
change nor the message exists. The rows a transaction stages are written together just before
its COMMIT, by one statement (``chassis.db.write_at_commit``). The trace context is captured
here, at write time, so a consumer's span continues the request that caused the message.

Who publishes a committed row (ADR 0042):

- In a service, the process that committed it, right after the commit: its messaging runtime
  installs a hand-off for its database (``hand_off_after_commit``), the rows go to it once the
  transaction has committed, and it publishes and marks them. No NOTIFY is sent.
- Anywhere else (a tool, a test without a runtime), the relay, woken by the NOTIFY that the
  same statement sends. The relay is also what publishes a row the hand-off never did (the
  process died between the commit and the publish, the broker was down): it takes rows left
  unpublished for a few seconds.
"""

from __future__ import annotations

import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from chassis.db import (
    Tx,
    after_commit,
    as_columns,
    engine_of,
    register_deferred,
    write_at_commit,
)
from chassis.messaging import forwarding
from chassis.messaging.envelope import Envelope
from chassis.messaging.tables import OUTBOX_CHANNEL

# Rows keep the order they were staged in (the relay publishes in id order); NOTIFY is
# delivered only on commit and collapsed per transaction: one wake-up per commit.
_INSERT = ("INSERT INTO outbox (message_id, subject, message_type, headers, payload) "
           "SELECT m, s, t, h, p FROM unnest(CAST($1 AS uuid[]), CAST($2 AS text[]), "
           "CAST($3 AS text[]), CAST($4 AS jsonb[]), CAST($5 AS bytea[])) "
           "WITH ORDINALITY AS x(m, s, t, h, p, n) ORDER BY n")
# Not a WITH query, so that it joins the commit's one statement (chassis.db): PostgreSQL
# delivers one notification for the identical ones a transaction sends.
_INSERT_MANY = f"{_INSERT} RETURNING pg_notify('{OUTBOX_CHANNEL}', '')"
# Rows the committing process hands off itself wake no relay.
_INSERT_MANY_QUIET = _INSERT
_KIND, _KIND_HANDED_OFF = "outbox", "outbox_handed_off"


register_deferred(_KIND, lambda rows: (_INSERT_MANY, as_columns(rows)))
register_deferred(_KIND_HANDED_OFF, lambda rows: (_INSERT_MANY_QUIET, as_columns(rows)))


@dataclass(frozen=True)
class Committed:
    """A staged message whose transaction has committed, as handed to a ``Handoff``."""

    message_id: uuid.UUID
    subject: str
    headers: dict[str, str]
    payload: bytes


class Handoff(Protocol):
    def hand_off(self, message: Committed) -> None:
        """Take a committed message to publish; must not block (called in the commit)."""


# Per database (its sync engine): who publishes what that database's sessions commit.
_HANDOFFS: weakref.WeakKeyDictionary[Engine, Handoff] = weakref.WeakKeyDictionary()


def hand_off_after_commit(engine: AsyncEngine, handoff: Handoff | None) -> None:
    """From now on, what sessions of ``engine`` stage goes to ``handoff`` once committed
    (``None``: back to the relay alone, woken by NOTIFY)."""
    if handoff is None:
        _HANDOFFS.pop(engine.sync_engine, None)
    else:
        _HANDOFFS[engine.sync_engine] = handoff


def _handoff_of(session: Tx) -> Handoff | None:
    engine = engine_of(session)
    return _HANDOFFS.get(engine) if engine is not None else None


class ContractLike(Protocol):
    @classmethod
    def subject(cls) -> str: ...

    @classmethod
    def message_type(cls) -> str: ...

    def to_payload(self) -> dict[str, Any]: ...


async def stage(session: Tx, contract: ContractLike, *,
                correlation_id: str | None = None,
                causation_id: str | None = None, then: str | None = None) -> Envelope:
    """Stage ``contract`` in the caller's transaction; its envelope (message id, type).
    ``then``: the next command its receiver forwards (``chassis.messaging.forwarding``)."""
    return await stage_message(session, contract.subject(), contract.message_type(),
                               contract.to_payload(), correlation_id=correlation_id,
                               causation_id=causation_id, then=then)


async def stage_message(session: Tx, subject: str, message_type: str,
                        payload: dict[str, Any], *, correlation_id: str | None = None,
                        causation_id: str | None = None, then: str | None = None) -> Envelope:
    # A handler's success event sends the next command its command carried, in the same
    # transaction: both commit, or neither.
    forward = forwarding.take(message_type)
    envelope = Envelope.new(subject, message_type, payload, correlation_id=correlation_id,
                            causation_id=causation_id, then=then,
                            forwarded=forward[0].message_type if forward else None)
    headers, body = envelope.headers(), envelope.body()
    handoff = _handoff_of(session)
    await write_at_commit(session, _KIND if handoff is None else _KIND_HANDED_OFF, (
        envelope.message_id, subject, message_type, orjson.dumps(headers).decode(), body))
    if handoff is not None:
        committed = Committed(envelope.message_id, subject, headers, body)
        # Dropped with the transaction (or the savepoint) if it rolls back.
        after_commit(session, lambda: handoff.hand_off(committed))
    if forward is not None:
        sent, correlation = forward
        await stage_message(session, sent.subject, sent.message_type, sent.payload,
                            correlation_id=correlation or correlation_id,
                            causation_id=str(envelope.message_id), then=sent.then)
    return envelope
