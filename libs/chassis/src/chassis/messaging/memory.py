"""An in-memory broker with the chassis's broker interfaces, for fast unit tests.

It keeps every published message per subject and hands consumers ``Delivery`` objects that
track acks, naks and delivery counts. Unlike JetStream it drops no duplicates, so tests see
exactly what the inbox has to cope with. It can also duplicate and reorder on purpose.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from chassis.messaging.broker import Outgoing


@dataclass
class MemoryDelivery:
    subject: str
    headers: dict[str, str]
    data: bytes
    sequence: int
    deliveries: int = 1
    state: str = "pending"  # pending | acked | naked | termed
    nak_delay: float | None = None

    @property
    def num_delivered(self) -> int:
        return self.deliveries

    @property
    def stream_sequence(self) -> int:
        return self.sequence

    async def ack(self) -> None:
        self.state = "acked"

    async def nak(self, delay: float | None = None) -> None:
        self.state, self.nak_delay = "naked", delay

    async def term(self) -> None:
        self.state = "termed"

    def redelivered(self) -> MemoryDelivery:
        return MemoryDelivery(self.subject, dict(self.headers), self.data, self.sequence,
                              self.deliveries + 1)


@dataclass
class InMemoryBroker:
    messages: list[Outgoing] = field(default_factory=list)
    fail_publishes: int = 0  # the next N publish_batch calls raise, as if the broker were down

    async def publish_batch(self, messages: list[Outgoing]) -> None:
        if self.fail_publishes > 0:
            self.fail_publishes -= 1
            raise ConnectionError("in-memory broker: unavailable")
        self.messages.extend(messages)

    def matching(self, pattern: str) -> list[Outgoing]:
        """Messages whose subject matches a NATS-style pattern (``>`` and ``*``)."""
        glob = pattern.replace(">", "*")
        return [m for m in self.messages if fnmatch.fnmatchcase(m.subject, glob)]

    def deliveries(self, pattern: str) -> list[MemoryDelivery]:
        glob = pattern.replace(">", "*")
        return [MemoryDelivery(m.subject, dict(m.headers), m.payload, i + 1)
                for i, m in enumerate(self.messages) if fnmatch.fnmatchcase(m.subject, glob)]
