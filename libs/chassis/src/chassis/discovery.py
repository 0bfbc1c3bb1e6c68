"""Client-side discovery: turn ``http://<service>/path`` into a live instance's URL.

A host without a dot, a port or "localhost" is taken as a service name and resolved
through the registry; anything else is used as written (production DNS, the edge, tests):
``http://identity:8000`` is Kubernetes' or compose's DNS name for the service, and
``http://identity`` the registry's.

A call never waits on a registry that is slow or gone once an answer is known: the last
known instances are served at once and refreshed in the background (stale while
revalidate). The registry is the broker's KV store, so a broker outage must not stop calls to
services that are alive; calling an instance that died meanwhile fails fast (connection
refused) and the caller's retry picks another. Only a service never resolved before waits
for the registry, and then for ``COLD_LOOKUP_S`` at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import structlog

from chassis.errors import ServiceUnavailable
from chassis.registry import STALE_AFTER_S, Instance, RegistryClient

log = structlog.get_logger("chassis.discovery")

FRESH_FOR_S = 2.0  # an answer this recent is served without asking the registry again
COLD_LOOKUP_S = 1.0  # the longest a call waits for the registry (nothing known yet)
REFRESH_TIMEOUT_S = 5.0  # a background refresh gives up after this
# After the registry was unreachable, instances missing from its answers are kept this long:
# their heartbeats could not be written during the outage, so their entries look stale (or
# expired) until they have beaten again, although the processes never went away.
REJOIN_GRACE_S = STALE_AFTER_S


def is_service_name(host: str) -> bool:
    return bool(host) and "." not in host and ":" not in host and host != "localhost"


@dataclass(frozen=True, slots=True)
class _Known:
    instances: list[Instance]
    confirmed_at: float


class Resolver:
    def __init__(self, registry_provider: Callable[[], RegistryClient | None], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # registry_provider() -> RegistryClient | None; NATS may connect after we start.
        self._provider = registry_provider
        self._clock = clock
        self._known: dict[str, _Known] = {}
        self._refreshing: dict[str, asyncio.Task[list[Instance]]] = {}
        self._trouble_at = -math.inf

    async def instances(self, service: str) -> list[Instance]:
        known = self._known.get(service)
        if known is not None and known.instances:
            if self._clock() - known.confirmed_at >= FRESH_FOR_S:
                self._refresh(service)
            return known.instances
        task = self._refresh(service)
        try:
            # shield: a lookup that outlives this call still fills the cache for the next.
            return await asyncio.wait_for(asyncio.shield(task), COLD_LOOKUP_S)
        except Exception as exc:
            reason = f"no answer within {COLD_LOOKUP_S:g}s" if isinstance(
                exc, TimeoutError) else (str(exc) or type(exc).__name__)
            raise ServiceUnavailable(f"cannot resolve '{service}': {reason}",
                                     headers={"Retry-After": "2"}) from exc

    def _refresh(self, service: str) -> asyncio.Task[list[Instance]]:
        """The one lookup of ``service`` in flight, started if there is none."""
        task = self._refreshing.get(service)
        if task is None or task.done():
            task = asyncio.create_task(self._lookup(service), name=f"discovery-{service}")
            self._refreshing[service] = task
            task.add_done_callback(lambda done: self._finished(service, done))
        return task

    def _finished(self, service: str, task: asyncio.Task[list[Instance]]) -> None:
        if self._refreshing.get(service) is task:
            del self._refreshing[service]
        if not task.cancelled() and task.exception() is not None:
            log.info("discovery_refresh_failed", service=service,
                     error=repr(task.exception())[:200])

    async def _lookup(self, service: str) -> list[Instance]:
        registry = self._provider()
        try:
            if registry is None:
                raise ConnectionError("the registry is not connected")
            found = await asyncio.wait_for(registry.instances(service), REFRESH_TIMEOUT_S)
        except Exception:
            self._trouble_at = self._clock()
            raise
        known = self._known.get(service)
        if (not found and known is not None and known.instances
                and self._clock() - self._trouble_at < REJOIN_GRACE_S):
            return known.instances
        self._known[service] = _Known(found, self._clock())
        return found

    async def resolve_url(self, url: str) -> str:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None or not is_service_name(host):
            return url
        found = await self.instances(host)
        if not found:
            raise ServiceUnavailable(f"no live instance of '{host}' in the registry",
                                     headers={"Retry-After": "2"})
        chosen = random.choice(found)  # noqa: S311 - load spreading, not security
        return urlunsplit((parts.scheme, f"{chosen.host}:{chosen.port}", parts.path,
                           parts.query, parts.fragment))

    async def close(self) -> None:
        for task in list(self._refreshing.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._refreshing.clear()
