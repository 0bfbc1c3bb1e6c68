"""Stream declarations: each producer declares its streams at start (idempotently)."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

DEAD_LETTER_STREAM = "DEAD_LETTERS"
DEAD_LETTER_PREFIX = "dlq"
DUPLICATE_WINDOW_S = 120.0
DEAD_LETTER_MAX_AGE_S = 30 * 86400.0


def events_stream_name(producer: str) -> str:
    return f"{producer.upper()}_EVENTS"


def events_subject(producer: str, name: str) -> str:
    return f"{producer}.events.{name}"


def commands_stream_name(target: str) -> str:
    return f"{target.upper()}_COMMANDS"


async def ensure_stream(js: JetStreamContext, name: str, subjects: list[str], *,
                        work_queue: bool = False, max_age_s: float = 7 * 86400) -> None:
    config = StreamConfig(
        name=name, subjects=subjects, storage=StorageType.FILE,
        retention=RetentionPolicy.WORK_QUEUE if work_queue else RetentionPolicy.LIMITS,
        max_age=max_age_s, duplicate_window=DUPLICATE_WINDOW_S)
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(config)
        return
    # Update only what differs: a service may read a shared stream (the dead letters) that
    # the runtime declared, without the right to change it.
    have = info.config
    if (sorted(have.subjects or []) != sorted(subjects) or have.retention != config.retention
            or have.max_age != config.max_age
            or have.duplicate_window != config.duplicate_window
            or have.storage != config.storage):
        await js.update_stream(config)


async def ensure_events_stream(js: JetStreamContext, producer: str) -> None:
    await ensure_stream(js, events_stream_name(producer), [f"{producer}.events.>"])


async def ensure_dead_letter_stream(js: JetStreamContext) -> None:
    await ensure_stream(js, DEAD_LETTER_STREAM, [f"{DEAD_LETTER_PREFIX}.>"],
                        max_age_s=DEAD_LETTER_MAX_AGE_S)
