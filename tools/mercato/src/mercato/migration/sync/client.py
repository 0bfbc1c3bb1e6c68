"""A service's API as the sync (and the stock split) call it: with the sync's own signed
service identity (ADR 0023), a refusal told apart from a failure worth retrying (ADR 0029,
0031, 0034)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiohttp
from chassis.http_client import H_SERVICE_IDENTITY
from chassis.service_identity import CallerSigner

CALLER = "sync"  # the identity catalog and identity let state records

R = TypeVar("R")


class Transient(Exception):
    """The service could not answer now (down, 5xx, timeout): try again later."""


class Rejected(Exception):
    """The service refused the record (4xx): retrying changes nothing."""


class Stale(Exception):
    """If-Match failed: the record changed since it was read."""


@dataclass(frozen=True, slots=True)
class Stored(Generic[R]):
    record: R
    version: int
    etag: str
    doc: dict[str, Any] | None = None  # the service's whole answer, fields the sync keeps


class ServiceClient:
    def __init__(self, target: str, base_url: Callable[[], Awaitable[str]],
                 signer: CallerSigner, timeout_s: float = 5.0) -> None:
        self._target = target
        self._base_url = base_url
        self._signer = signer
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=2)
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def _call(self, method: str, path: str, *, json: Any = None,
                    headers: dict[str, str] | None = None,
                    params: Any = None) -> tuple[int, Any, dict[str, str]]:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        url = await self._base_url() + path
        sent = {H_SERVICE_IDENTITY: self._signer.token_for(self._target),
                "accept": "application/json", **(headers or {})}
        try:
            async with self._http.request(method, url, json=json, headers=sent,
                                          params=params) as resp:
                body = await resp.json(content_type=None) if resp.content_length != 0 else None
                status, got = resp.status, dict(resp.headers)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Transient(f"{method} {path}: {type(exc).__name__} {exc}") from exc
        if status >= 500 or status in (401, 403, 408, 429):
            # 401/403: keys not yet trusted after a restart; they will be.
            raise Transient(f"{method} {path}: {status} {detail(body)}")
        return status, body, got


def detail(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or "")
    return ""
