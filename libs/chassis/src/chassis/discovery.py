"""Client-side discovery: turn ``http://<service>/path`` into a live instance's URL.

A host without a dot, a port or "localhost" is taken as a service name and resolved through
the registry; anything else is used as written (production DNS, the edge, tests):
``http://identity:8000`` is Kubernetes' or compose's DNS name for the service, and
``http://identity`` the registry's.

A call never waits on a registry that is slow or gone once an answer is known: the last
listing is served at once and refreshed in the background (stale while revalidate). The
registry is the broker's KV store, so a broker outage must not stop calls to services that
are alive; calling an instance that died meanwhile fails fast (connection refused), the
caller ``forget``s it and tries another (the HTTP client does, for any method: nothing was
sent), and the next call lists the registry again. The whole registry is listed at once (a
dozen entries), and ``warm`` lists it as soon as the broker is reachable, so a service knows
every instance before its first call — and through an outage that begins before it. Only a
service no listing showed waits for the registry, and then for ``COLD_LOOKUP_S`` at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import structlog

from chassis.errors import ServiceUnavailable
from chassis.registry import STALE_AFTER_S, Instance, RegistryClient

log = structlog.get_logger("chassis.discovery")

FRESH_FOR_S = 2.0  # a listing this recent is served without asking the registry again
COLD_LOOKUP_S = 1.0  # the longest a call waits for the registry (its service never listed)
REFRESH_TIMEOUT_S = 5.0  # a background listing gives up after this
# After the registry was unreachable, instances missing from its answers are kept this long:
# their heartbeats could not be written during the outage, so their entries look stale (or
# expired) until they have beaten again, although the processes never went away.
REJOIN_GRACE_S = STALE_AFTER_S


def is_service_name(host: str) -> bool:
    return bool(host) and "." not in host and ":" not in host and host != "localhost"


class Resolver:
    def __init__(self, registry_provider: Callable[[], RegistryClient | None], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # registry_provider() -> RegistryClient | None; NATS may connect after we start.
        self._provider = registry_provider
        self._clock = clock
        self._known: dict[str, list[Instance]] = {}
        self._listed_at = -math.inf
        self._listing: asyncio.Task[None] | None = None
        self._trouble_at = -math.inf

    def known(self, service: str) -> list[Instance]:
        """The instances of ``service`` in the last listing (no lookup)."""
        return list(self._known.get(service, []))

    async def instances(self, service: str) -> list[Instance]:
        found = self._known.get(service)
        fresh = self._clock() - self._listed_at < FRESH_FOR_S
        if found:
            if not fresh:
                self._refresh()
            return found
        if fresh:
            return []  # the registry said so a moment ago: no need to ask again
        try:
            # shield: a listing that outlives this call still serves the next one.
            await asyncio.wait_for(asyncio.shield(self._refresh()), COLD_LOOKUP_S)
        except Exception as exc:
            reason = f"no answer within {COLD_LOOKUP_S:g}s" if isinstance(
                exc, TimeoutError) else (str(exc) or type(exc).__name__)
            raise ServiceUnavailable(f"cannot resolve '{service}': {reason}",
                                     headers={"Retry-After": "2"}) from exc
        return self._known.get(service, [])

    async def warm(self, give_up_after_s: float = 120.0) -> bool:
        """List the registry once it answers, so calls never wait on it later."""
        delay, deadline = 0.2, time.monotonic() + give_up_after_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                await self._refresh()
                return True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        return False

    def _refresh(self) -> asyncio.Task[None]:
        """The one listing in flight, started if there is none."""
        if self._listing is None or self._listing.done():
            self._listing = asyncio.create_task(self._list(), name="discovery-listing")
            self._listing.add_done_callback(_log_failure)
        return self._listing

    async def _list(self) -> None:
        registry = self._provider()
        try:
            if registry is None:
                raise ConnectionError("the registry is not connected")
            listed = await asyncio.wait_for(registry.instances(), REFRESH_TIMEOUT_S)
        except Exception:
            self._trouble_at = self._clock()
            raise
        if self._clock() - self._trouble_at < REJOIN_GRACE_S:
            keys = {i.key for i in listed}
            listed += [i for known in self._known.values() for i in known if i.key not in keys]
        by_service: dict[str, list[Instance]] = {}
        for instance in listed:
            by_service.setdefault(instance.service, []).append(instance)
        self._known = by_service
        self._listed_at = self._clock()

    def forget(self, url: str) -> None:
        """Drop the instance ``url`` points at (it refused a connection) until a listing
        shows it again, and list the registry again on the next call."""
        parts = urlsplit(url)
        for service, instances in self._known.items():
            kept = [i for i in instances
                    if (i.host, i.port) != (parts.hostname, parts.port)]
            if len(kept) != len(instances):
                self._known[service] = kept
                self._listed_at = -math.inf

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
        if self._listing is not None:
            self._listing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listing


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.info("discovery_listing_failed", error=repr(task.exception())[:200])
