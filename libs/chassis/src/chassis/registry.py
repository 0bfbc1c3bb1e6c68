"""Service registry on a NATS KV bucket: instances register, heartbeat and deregister.

Readers (the gateway control plane, service discovery) list live instances. An entry whose
heartbeat is older than ``STALE_AFTER`` seconds counts as gone even before the bucket's TTL
removes it, so a killed process stops receiving traffic within seconds.

Given trusted keys, a reader also ignores every entry that is not signed by the service it
names, or that sits under another service's key (``chassis.registry_keys``): a forged entry
cannot send the edge's traffic or a token check's key fetch to an impostor.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass

import orjson
import structlog
from nats.aio.client import Client as NATS
from nats.js.errors import BucketNotFoundError, KeyDeletedError, KeyNotFoundError
from nats.js.kv import KeyValue

from chassis.registry_keys import SIGNATURE_FIELD, EntrySigner, TrustedKeys

BUCKET = "mercato_registry"
BUCKET_TTL_S = 15.0
HEARTBEAT_EVERY_S = 3.0
STALE_AFTER_S = 10.0

log = structlog.get_logger("chassis.registry")


@dataclass(frozen=True, slots=True)
class Instance:
    service: str
    instance_id: str
    host: str
    port: int
    pid: int
    started_at: float
    heartbeat_at: float

    @property
    def key(self) -> str:
        return f"{self.service}.{self.instance_id}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def is_fresh(self, now: float | None = None) -> bool:
        return ((now or time.time()) - self.heartbeat_at) <= STALE_AFTER_S


async def open_bucket(nc: NATS) -> KeyValue:
    """Return the registry bucket, creating it on first use."""
    js = nc.jetstream()
    try:
        return await js.key_value(BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(bucket=BUCKET, ttl=BUCKET_TTL_S, history=1)


def _decode(raw: bytes | None) -> tuple[Instance, dict[str, object]] | None:
    if not raw:
        return None
    try:
        fields = orjson.loads(raw)
        if not isinstance(fields, dict):
            return None
        plain = {k: v for k, v in fields.items() if k != SIGNATURE_FIELD}
        return Instance(**plain), fields
    except (orjson.JSONDecodeError, TypeError):
        return None


class RegistryClient:
    """Reads and writes the registry bucket over one NATS connection.

    ``signer`` signs what this client puts; ``trusted`` (when given) makes it ignore every
    entry that does not verify. Without ``trusted`` every well-formed entry counts: that is
    for tests and tools only, the runtime always passes the keys.
    """

    def __init__(self, nc: NATS, *, signer: EntrySigner | None = None,
                 trusted: TrustedKeys | None = None) -> None:
        self._nc = nc
        self._kv: KeyValue | None = None
        self._signer = signer
        self._trusted = trusted if trusted else None
        self._warned: set[tuple[str, int]] = set()

    async def bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await open_bucket(self._nc)
        return self._kv

    async def put(self, instance: Instance) -> None:
        kv = await self.bucket()
        fields: dict[str, object] = asdict(instance)
        if self._signer is not None:
            fields[SIGNATURE_FIELD] = self._signer.sign(fields)
        await kv.put(instance.key, orjson.dumps(fields))

    def _accepts(self, key: str, revision: int, decoded: tuple[Instance, dict[str, object]]
                 ) -> bool:
        inst, fields = decoded
        if self._trusted is None:
            return True
        if inst.key == key and self._trusted.verifies(inst.service, fields):
            return True
        if (key, revision) not in self._warned:  # once per write, not once per re-list
            if len(self._warned) > 1000:
                self._warned.clear()
            self._warned.add((key, revision))
            log.warning("registry_entry_rejected", key=key, service=inst.service,
                        reason="not signed by the service it names, or under another key")
        return False

    async def delete(self, instance: Instance) -> None:
        kv = await self.bucket()
        await kv.delete(instance.key)

    async def instances(self, service: str | None = None) -> list[Instance]:
        """Live instances, optionally of one service, sorted by key.

        The keys come from the KV stream's subject list (one JetStream API call), not from
        nats-py's ``kv.keys()``: that builds a throwaway consumer per call and, under load,
        can end its initial pass early and report no keys at all — which would empty every
        cluster at the edge for a moment.
        """
        kv = await self.bucket()
        prefix = f"$KV.{BUCKET}."
        subjects_filter = f"{prefix}{service}.>" if service else f"{prefix}>"
        info = await self._nc.jetstream().stream_info(f"KV_{BUCKET}",
                                                      subjects_filter=subjects_filter)
        keys = sorted(subject[len(prefix):] for subject in (info.state.subjects or {}))
        now = time.time()
        found: list[Instance] = []
        for key in keys:
            try:
                entry = await kv.get(key)
            except (KeyNotFoundError, KeyDeletedError):  # deregistered, or expired meanwhile
                continue
            decoded = _decode(entry.value)
            if decoded is None or not self._accepts(key, entry.revision or 0, decoded):
                continue
            if decoded[0].is_fresh(now):
                found.append(decoded[0])
        return found

    async def changes(self) -> AsyncIterator[KeyValue.Entry | None]:
        """Yield whenever the bucket changes (put, delete, purge): the entry as written (None
        marks the end of the initial values). Callers re-list what they need; the entry
        lets them tell a heartbeat from a change first."""
        kv = await self.bucket()
        watcher = await kv.watchall(include_history=False)
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=3600)
                except TimeoutError:
                    continue
                yield entry
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()


class Registration:
    """Keeps one instance registered: put, heartbeat every few seconds, delete on stop."""

    def __init__(self, registry: RegistryClient, *, service: str, instance_id: str,
                 host: str, port: int) -> None:
        now = time.time()
        self._registry = registry
        self._instance = Instance(service=service, instance_id=instance_id, host=host,
                                  port=port, pid=os.getpid(), started_at=now, heartbeat_at=now)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # When the bucket last acknowledged a put (time.monotonic()): JetStream answered.
        self.acknowledged_at = -math.inf

    @property
    def instance(self) -> Instance:
        return self._instance

    async def start(self) -> None:
        await self._registry.put(self._instance)
        self.acknowledged_at = time.monotonic()
        self._task = asyncio.create_task(self._beat(),
                                         name=f"registry-heartbeat-{self._instance.key}")

    async def _beat(self) -> None:
        # The flag, not only the cancel, ends the loop: on Python 3.11 a cancel that meets a
        # NATS reply arriving at the same moment is lost inside ``asyncio.wait_for``
        # (CPython gh-86296), and the heartbeat would then run on for ever.
        while not self._stopping:
            await asyncio.sleep(HEARTBEAT_EVERY_S)
            if self._stopping:
                return
            with contextlib.suppress(Exception):
                await self.beat_now()

    async def beat_now(self) -> None:
        """Refresh the entry at once: after a broker outage it may be stale (or expired), and
        readers would drop this instance until the next regular beat."""
        self._instance = Instance(**{**asdict(self._instance), "heartbeat_at": time.time()})
        await self._registry.put(self._instance)
        self.acknowledged_at = time.monotonic()

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            # ``asyncio.wait`` neither raises the heartbeat's CancelledError nor swallows one
            # aimed at the caller (a timeout around stop() must still fire).
            await asyncio.wait({self._task})
        with contextlib.suppress(Exception):
            await self._registry.delete(self._instance)
