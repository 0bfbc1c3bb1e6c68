"""Writing to the outbox inside the caller's unit of work.

``stage(session, contract, correlation_id=..., causation_id=...)`` is how a service publishes
an event or sends a command: the contract (anything with ``subject()``, ``message_type()``
and ``to_payload()``, which every ``contracts.base.Contract`` has; the chassis does not
import the contracts package) names its own subject and type. ``stage_message`` is the same
for a message that has no contract class (tools, tests of the outbox itself).

Staging writes the message row and a NOTIFY in the same transaction as the state change:
if the transaction commits, the relay will publish the message (at least once); if it rolls
back, neither the change nor the message exists. The rows a transaction stages are written
together just before its COMMIT, by one statement that also sends the NOTIFY
(``chassis.db.write_at_commit``). The trace context is captured here, at
write time, so a consumer's span continues the request that caused the message.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import TextClause

from chassis.db import register_deferred, write_at_commit
from chassis.messaging.envelope import Envelope
from chassis.messaging.tables import OUTBOX_CHANNEL

# Rows keep the order they were staged in (the relay publishes in id order); NOTIFY is
# delivered only on commit and collapsed per transaction: one wake-up per commit.
_INSERT_MANY = text(
    "WITH staged AS (INSERT INTO outbox (message_id, subject, message_type, headers, payload) "  # noqa: S608
    "SELECT m, s, t, h, p FROM unnest(CAST(:ids AS uuid[]), CAST(:subjects AS text[]), "
    "CAST(:types AS text[]), CAST(:headers AS jsonb[]), CAST(:payloads AS bytea[])) "
    "WITH ORDINALITY AS x(m, s, t, h, p, n) ORDER BY n RETURNING 1) "
    f"SELECT pg_notify('{OUTBOX_CHANNEL}', '')")
_KIND = "outbox"


def _insert_many(rows: list[tuple[Any, ...]]) -> tuple[TextClause, dict[str, Any]]:
    ids, subjects, types, headers, payloads = zip(*rows, strict=True)
    return _INSERT_MANY, {"ids": list(ids), "subjects": list(subjects), "types": list(types),
                          "headers": list(headers), "payloads": list(payloads)}


register_deferred(_KIND, _insert_many)


class ContractLike(Protocol):
    @classmethod
    def subject(cls) -> str: ...

    @classmethod
    def message_type(cls) -> str: ...

    def to_payload(self) -> dict[str, Any]: ...


async def stage(session: AsyncSession, contract: ContractLike, *,
                correlation_id: str | None = None,
                causation_id: str | None = None) -> Envelope:
    """Stage ``contract`` in the caller's transaction; its envelope (message id, type)."""
    return await stage_message(session, contract.subject(), contract.message_type(),
                               contract.to_payload(), correlation_id=correlation_id,
                               causation_id=causation_id)


async def stage_message(session: AsyncSession, subject: str, message_type: str,
                        payload: dict[str, Any], *, correlation_id: str | None = None,
                        causation_id: str | None = None) -> Envelope:
    envelope = Envelope.new(subject, message_type, payload, correlation_id=correlation_id,
                            causation_id=causation_id)
    await write_at_commit(session, _KIND, (
        envelope.message_id, subject, message_type,
        orjson.dumps(envelope.headers()).decode(), envelope.body()))
    return envelope
