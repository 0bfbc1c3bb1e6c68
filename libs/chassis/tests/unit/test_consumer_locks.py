"""ConsumerSpec.locks (ADR 0055): the lock a message's handler takes first, read from the
message by the consumer so that it goes with the inbox claim."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from chassis.messaging.consumer import ConsumerSpec, InboxConsumer, lock_on
from chassis.messaging.envelope import Envelope


def envelope(payload: dict[str, Any], message_type: str = "Reserve.v1") -> Envelope:
    return Envelope(message_id=uuid.uuid4(), message_type=message_type, subject="x.commands.r",
                    payload=payload, occurred_at=datetime(2026, 12, 5, tzinfo=UTC))


@pytest.mark.parametrize(("payload", "lock"), [
    ({"reservation_id": "r-1"}, (7, "r-1")),
    ({"reservation_id": "it's"}, (7, "it's")),
    ({}, None),                          # no key: the handler rejects the message itself
    ({"reservation_id": None}, None),
    ({"reservation_id": 5}, None),       # not text: no lock on a made-up key
    ({"reservation_id": ""}, None),
    ({"reservation_id": "a\x00b"}, None),
])
def test_lock_on_reads_the_key_or_gives_none(payload: dict[str, Any],
                                             lock: tuple[int, str] | None) -> None:
    assert lock_on(7, "reservation_id")(envelope(payload)) == lock


def test_a_consumer_takes_the_lock_of_the_types_that_declare_one() -> None:
    async def handler(session: Any, env: Envelope) -> None:
        return None

    def broken(env: Envelope) -> tuple[int, str] | None:
        raise KeyError("reservation_id")

    spec = ConsumerSpec("c", "S", ["x.>"], {"Reserve.v1": handler, "Other.v1": handler,
                                            "Broken.v1": handler},
                        locks={"Reserve.v1": lock_on(7, "reservation_id"),
                               "Broken.v1": broken})
    consumer = InboxConsumer(spec, None, None)  # type: ignore[arg-type]
    assert consumer._locks(envelope({"reservation_id": "r-1"})) == ((7, "r-1"),)
    assert consumer._locks(envelope({"reservation_id": "r-1"}, "Other.v1")) == ()
    assert consumer._locks(envelope({}, "Broken.v1")) == ()
