"""What each identity may do on the broker, derived from what its service declares.

The broker refuses anonymous connections; every service connects as its own NATS user, and
that user may use only the subjects below, all of them a function of the service's
``Messaging`` declaration (``BrokerNeeds.of``). So a service may:

- publish its own events (the subjects of the non-work-queue streams it owns) and the
  commands it declares it sends (``Messaging.sends``), and nothing else;
- declare (create, update) the streams it owns;
- create, read, acknowledge and replace only its own durable consumers, plus throw-away
  ordered consumers (replays) on the streams it already consumes;
- publish its dead letters to ``dlq.<its consumer>``;
- in the registry, write only ``<service>.*`` keys and read every entry;
- receive replies only on its own inbox prefix (``_INBOX_<service>``), so it cannot read
  another identity's JetStream API answers or deliveries.

Everything not listed is denied. JetStream API subjects are spelled out because the API is
itself made of subjects: ``$JS.API.CONSUMER.CREATE.<stream>.<durable>`` is "make this
consumer", ``$JS.ACK.<stream>.<durable>.>`` is "acknowledge its messages". The messages
themselves are pushed to a subject under the identity's own inbox prefix (ADR 0040), so no
other identity can receive them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chassis.messaging.streams import DEAD_LETTER_PREFIX, DEAD_LETTER_STREAM
from chassis.registry import BUCKET

if TYPE_CHECKING:
    from chassis.messaging.runtime import Messaging

API = "$JS.API"
REGISTRY_STREAM = f"KV_{BUCKET}"


def inbox_prefix(identity: str) -> str:
    """The reply-inbox prefix of one identity (nats-py's ``inbox_prefix``)."""
    return f"_INBOX_{identity}"


@dataclass(frozen=True)
class BrokerNeeds:
    """What a service does on the broker, as its Messaging declaration says."""

    streams: tuple[str, ...] = ()  # streams it declares: creates and updates
    publishes: tuple[str, ...] = ()  # subjects its outbox publishes to
    consumers: tuple[tuple[str, str], ...] = ()  # (stream, durable) it reads

    @classmethod
    def of(cls, messaging: Messaging | None) -> BrokerNeeds:
        if messaging is None:
            return cls()
        publishes: set[str] = set()
        if messaging.outbox:
            # Events go to the streams it owns; its own command queue is written by others.
            publishes.update(s for st in messaging.streams if not st.work_queue
                             for s in st.subjects)
            publishes.update(messaging.sends)
        return cls(streams=tuple(sorted(st.name for st in messaging.streams)),
                   publishes=tuple(sorted(publishes)),
                   consumers=tuple(sorted({(c.stream, c.name) for c in messaging.consumers})))


@dataclass(frozen=True)
class BrokerPermissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    def as_config(self) -> dict[str, Any]:
        """The ``permissions`` block of a user in nats.conf."""
        return {"publish": {"allow": list(self.publish)},
                "subscribe": {"allow": list(self.subscribe)}}


def _declare(stream: str) -> set[str]:
    return {f"{API}.STREAM.INFO.{stream}", f"{API}.STREAM.CREATE.{stream}",
            f"{API}.STREAM.UPDATE.{stream}"}


def _durable(stream: str, durable: str) -> set[str]:
    return {
        f"{API}.STREAM.INFO.{stream}",
        f"{API}.CONSUMER.INFO.{stream}.{durable}",
        # Both ways of creating (or updating the filter of) a named consumer.
        f"{API}.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
        f"{API}.CONSUMER.CREATE.{stream}.{durable}",
        f"{API}.CONSUMER.CREATE.{stream}.{durable}.>",
        # Replacing a pull consumer of a release before ADR 0040 by a push one.
        f"{API}.CONSUMER.DELETE.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    }


def _replay(stream: str) -> set[str]:
    """An ordered, ephemeral consumer (a read-only replay, a KV watch). This create subject
    takes no consumer name: the server refuses a durable one there, so it cannot be used to
    rewrite another identity's durable consumer. (A KV watch asks its consumer's info.)"""
    return {f"{API}.STREAM.INFO.{stream}", f"{API}.CONSUMER.CREATE.{stream}",
            f"{API}.CONSUMER.INFO.{stream}.*", f"$JS.FC.{stream}.>"}


def registry_reader() -> set[str]:
    return {f"{API}.STREAM.INFO.{REGISTRY_STREAM}", f"{API}.STREAM.MSG.GET.{REGISTRY_STREAM}",
            f"{API}.DIRECT.GET.{REGISTRY_STREAM}", f"{API}.DIRECT.GET.{REGISTRY_STREAM}.>"}


def registry_writer(service: str) -> set[str]:
    return {f"$KV.{BUCKET}.{service}.>"}


def _permissions(identity: str, publish: Iterable[str]) -> BrokerPermissions:
    return BrokerPermissions(publish=tuple(sorted(set(publish))),
                             subscribe=(f"{inbox_prefix(identity)}.>",))


def service_permissions(service: str, needs: BrokerNeeds) -> BrokerPermissions:
    publish = registry_reader() | registry_writer(service) | set(needs.publishes)
    for stream in needs.streams:
        publish |= _declare(stream)
    for stream, durable in needs.consumers:
        publish |= _durable(stream, durable) | _replay(stream)
        publish.add(f"{DEAD_LETTER_PREFIX}.{durable}")
    if needs.consumers:
        publish.add(f"{API}.STREAM.INFO.{DEAD_LETTER_STREAM}")
    return _permissions(service, publish)


def gateway_permissions(identity: str) -> BrokerPermissions:
    """The control plane: reads and watches the registry, nothing else."""
    return _permissions(identity, registry_reader() | _replay(REGISTRY_STREAM))


def runtime_permissions(identity: str) -> BrokerPermissions:
    """The supervisor: declares the shared registry bucket and dead-letter stream before any
    service starts, so no service needs the right to create or reconfigure them."""
    return _permissions(identity, _declare(REGISTRY_STREAM) | _declare(DEAD_LETTER_STREAM))


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` is one token, a final ``>`` one or more."""
    p, s = pattern.split("."), subject.split(".")
    for i, part in enumerate(p):
        if part == ">":
            return len(s) > i
        if i >= len(s) or part not in ("*", s[i]):
            return False
    return len(p) == len(s)
