"""The inventory's side, through its API only: free units read in batches, and units moved
in or out by an idempotent adjustment keyed by the transfer id, with the sync's signed
service identity (ADR 0023, 0034)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from chassis.http_client import H_SERVICE_IDENTITY
from chassis.service_identity import CallerSigner

CALLER = "sync"  # the identity the inventory lets adjust (inventory.entrypoints.deps)
BATCH = 100  # the inventory's GET /stock takes at most 100 SKUs


class Transient(Exception):
    """No answer now (down, 5xx, timeout, keys not trusted yet): try again later."""


class Rejected(Exception):
    """A 4xx other than "not enough free units": the adjustment was not made, and retrying
    changes nothing."""


@dataclass(frozen=True, slots=True)
class Level:
    on_hand: int
    reserved: int

    @property
    def free(self) -> int:
        return self.on_hand - self.reserved


@dataclass(frozen=True, slots=True)
class Adjusted:
    applied: bool  # False: refused, fewer units were free (409)
    level: Level | None


class Inventory:
    def __init__(self, base_url: Callable[[], Awaitable[str]], signer: CallerSigner,
                 timeout_s: float = 5.0) -> None:
        self._base_url = base_url
        self._signer = signer
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=2)
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def _call(self, method: str, path: str, *, json: Any = None,
                    params: Any = None) -> tuple[int, Any]:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        url = await self._base_url() + path
        headers = {H_SERVICE_IDENTITY: self._signer.token_for("inventory"),
                   "accept": "application/json"}
        try:
            async with self._http.request(method, url, json=json, params=params,
                                          headers=headers) as resp:
                body = await resp.json(content_type=None) if resp.content_length != 0 else None
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Transient(f"{method} {path}: {type(exc).__name__} {exc}") from exc
        if status >= 500 or status in (401, 403, 408, 429):
            raise Transient(f"{method} {path}: {status} {body}")
        return status, body

    async def levels(self, skus: Sequence[str]) -> dict[str, Level]:
        """The inventory's units of these SKUs; a SKU it has no row for is absent."""
        found: dict[str, Level] = {}
        for i in range(0, len(skus), BATCH):
            chunk = list(skus[i:i + BATCH])
            status, body = await self._call("GET", "/api/inventory/stock",
                                            params=[("sku", s) for s in chunk])
            if status != 200:
                raise Rejected(f"GET /api/inventory/stock: {status} {body}")
            for item in body["items"]:
                found[item["sku"]] = Level(item["on_hand"], item["reserved"])
        return found

    async def adjust(self, sku: str, adjustment_id: str, delta: int) -> Adjusted:
        status, body = await self._call("POST", f"/api/inventory/stock/{sku}/adjustments",
                                        json={"id": adjustment_id, "delta": delta})
        if status == 200:
            return Adjusted(True, Level(body["on_hand"], body["reserved"]))
        if status == 409 and (body or {}).get("title") == "Not enough free units":
            return Adjusted(False, None)
        raise Rejected(f"adjust {sku} {delta:+d} ({adjustment_id}): {status} {body}")
