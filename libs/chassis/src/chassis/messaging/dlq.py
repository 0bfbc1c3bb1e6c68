"""Operator tools over the dead-letter stream: list, show, replay, discard.

A replay publishes the original body and headers back to the original subject under a fresh
``Nats-Msg-Id`` (the broker must not drop it as a duplicate) but the same
``Mercato-Message-Id``: every consumer of that subject sees it again, and the ones that had
already handled it skip it through their inbox. The dead letter is deleted once the broker
has acknowledged the replay. A discard deletes a dead letter an operator judged harmless (a
reply for a saga that was never ours, say) without replaying it.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from chassis.messaging.consumer import (
    H_DLQ_CONSUMER,
    H_DLQ_DELIVERIES,
    H_DLQ_ERROR,
    H_DLQ_STREAM_SEQ,
    H_DLQ_SUBJECT,
)
from chassis.messaging.envelope import H_MESSAGE_ID, H_NATS_MSG_ID, H_TYPE
from chassis.messaging.streams import DEAD_LETTER_STREAM

_DLQ_HEADERS = (H_DLQ_CONSUMER, H_DLQ_SUBJECT, H_DLQ_ERROR, H_DLQ_DELIVERIES, H_DLQ_STREAM_SEQ)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    sequence: int
    consumer: str
    subject: str
    message_type: str
    message_id: str
    error: str
    deliveries: int
    headers: dict[str, str]
    data: bytes

    def original_headers(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if k not in _DLQ_HEADERS}


async def _get(js: JetStreamContext, seq: int) -> DeadLetter | None:
    try:
        raw = await js.get_msg(DEAD_LETTER_STREAM, seq)
    except NotFoundError:
        return None
    h = dict(raw.headers or {})
    return DeadLetter(sequence=seq, consumer=h.get(H_DLQ_CONSUMER, "?"),
                      subject=h.get(H_DLQ_SUBJECT, "?"), message_type=h.get(H_TYPE, "?"),
                      message_id=h.get(H_MESSAGE_ID) or h.get(H_NATS_MSG_ID) or "?",
                      error=h.get(H_DLQ_ERROR, ""), deliveries=int(h.get(H_DLQ_DELIVERIES, 0)),
                      headers=h, data=raw.data or b"")


async def list_dead_letters(js: JetStreamContext, consumer: str | None = None,
                            limit: int = 100) -> list[DeadLetter]:
    try:
        info = await js.stream_info(DEAD_LETTER_STREAM)
    except NotFoundError:
        return []
    found: list[DeadLetter] = []
    if not info.state.messages:
        return found
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        letter = await _get(js, seq)
        if letter is not None and (consumer is None or letter.consumer == consumer):
            found.append(letter)
            if len(found) >= limit:
                break
    return found


async def show_dead_letter(js: JetStreamContext, seq: int) -> DeadLetter | None:
    return await _get(js, seq)


async def replay_dead_letter(js: JetStreamContext, seq: int) -> DeadLetter | None:
    letter = await _get(js, seq)
    if letter is None:
        return None
    headers = letter.original_headers()
    headers[H_NATS_MSG_ID] = f"{letter.message_id}-replay-{seq}"
    await js.publish(letter.subject, letter.data, headers=headers)
    await js.delete_msg(DEAD_LETTER_STREAM, seq)
    return letter


async def discard_dead_letter(js: JetStreamContext, seq: int) -> DeadLetter | None:
    letter = await _get(js, seq)
    if letter is None:
        return None
    await js.delete_msg(DEAD_LETTER_STREAM, seq)
    return letter
