"""Client-side discovery: turn ``http://<service>/path`` into a live instance's URL.

A host without a dot, a port or "localhost" is taken as a service name and resolved
through the registry; anything else is used as written (production DNS, the edge, tests):
``http://identity:8000`` is Kubernetes' or compose's DNS name for the service, and
``http://identity`` the registry's.
"""

from __future__ import annotations

import asyncio
import random
import time
from urllib.parse import urlsplit, urlunsplit

from chassis.errors import ServiceUnavailable
from chassis.registry import Instance, RegistryClient

_CACHE_S = 2.0
_STALE_OK_S = 30.0
_LOOKUP_TIMEOUT_S = 2.0


def is_service_name(host: str) -> bool:
    return bool(host) and "." not in host and ":" not in host and host != "localhost"


class Resolver:
    def __init__(self, registry_provider: object) -> None:
        # registry_provider() -> RegistryClient | None; NATS may connect after we start.
        self._provider = registry_provider
        self._cache: dict[str, tuple[float, list[Instance]]] = {}

    async def instances(self, service: str) -> list[Instance]:
        cached = self._cache.get(service)
        now = time.monotonic()
        if cached and now - cached[0] < _CACHE_S and cached[1]:
            return cached[1]
        registry: RegistryClient | None = self._provider()  # type: ignore[operator]
        try:
            if registry is None:
                raise ConnectionError("the registry is not connected")
            found = await asyncio.wait_for(registry.instances(service), _LOOKUP_TIMEOUT_S)
        except Exception as exc:
            # A slow or briefly unreachable registry must not fail calls to services that
            # were alive a moment ago: serve the last answer for a while.
            if cached and now - cached[0] < _STALE_OK_S and cached[1]:
                return cached[1]
            raise ServiceUnavailable(f"cannot resolve '{service}': {exc or type(exc).__name__}",
                                     headers={"Retry-After": "2"}) from exc
        self._cache[service] = (now, found)
        return found

    async def resolve_url(self, url: str) -> str:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None or not is_service_name(host):
            return url
        found = await self.instances(host)
        if not found:
            raise ServiceUnavailable(f"no live instance of '{host}' in the registry")
        chosen = random.choice(found)  # noqa: S311 - load spreading, not security
        return urlunsplit((parts.scheme, f"{chosen.host}:{chosen.port}", parts.path,
                           parts.query, parts.fragment))
