"""Writing to the outbox inside the caller's unit of work.

``stage`` inserts the message row and a NOTIFY in the same transaction as the state change:
if the transaction commits, the relay will publish the message (at least once); if it rolls
back, neither the change nor the message exists. The trace context is captured here, at
write time, so a consumer's span continues the request that caused the message.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from chassis.messaging.envelope import Envelope
from chassis.messaging.tables import OUTBOX_CHANNEL

_INSERT = text(
    "INSERT INTO outbox (message_id, subject, message_type, headers, payload) "
    "VALUES (:message_id, :subject, :message_type, CAST(:headers AS jsonb), :payload)")
_NOTIFY = text(f"SELECT pg_notify('{OUTBOX_CHANNEL}', '')")


async def stage(session: AsyncSession, subject: str, message_type: str,
                payload: dict[str, Any], *, correlation_id: str | None = None,
                causation_id: str | None = None) -> Envelope:
    import orjson

    envelope = Envelope.new(subject, message_type, payload, correlation_id=correlation_id,
                            causation_id=causation_id)
    await session.execute(_INSERT, {
        "message_id": envelope.message_id, "subject": subject, "message_type": message_type,
        "headers": orjson.dumps(envelope.headers()).decode(), "payload": envelope.body()})
    # NOTIFY is delivered only on commit and collapsed per transaction: one wake-up per commit.
    await session.execute(_NOTIFY)
    return envelope
