"""The inventory's side, through its API only: free units read in batches, and units moved
in or out by an idempotent adjustment keyed by the transfer id, with the sync's signed
service identity (ADR 0023, 0034)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from chassis.service_identity import CallerSigner

# Rejected (a 4xx other than "not enough free units": retrying changes nothing) and
# Transient (down, 5xx, timeout, keys not trusted yet) are the sync client's.
from mercato.migration.sync.client import Rejected, ServiceClient

CALLER = "sync"  # the identity the inventory lets adjust (inventory.entrypoints.deps)
BATCH = 100  # the inventory's GET /stock takes at most 100 SKUs


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


class Inventory(ServiceClient):
    def __init__(self, base_url: Callable[[], Awaitable[str]], signer: CallerSigner,
                 timeout_s: float = 5.0) -> None:
        super().__init__("inventory", base_url, signer, timeout_s)

    async def levels(self, skus: Sequence[str]) -> dict[str, Level]:
        """The inventory's units of these SKUs; a SKU it has no row for is absent."""
        found: dict[str, Level] = {}
        for i in range(0, len(skus), BATCH):
            chunk = list(skus[i:i + BATCH])
            status, body, _ = await self._call("GET", "/api/inventory/stock",
                                               params=[("sku", s) for s in chunk])
            if status != 200:
                raise Rejected(f"GET /api/inventory/stock: {status} {body}")
            for item in body["items"]:
                found[item["sku"]] = Level(item["on_hand"], item["reserved"])
        return found

    async def adjust(self, sku: str, adjustment_id: str, delta: int) -> Adjusted:
        status, body, _ = await self._call("POST", f"/api/inventory/stock/{sku}/adjustments",
                                           json={"id": adjustment_id, "delta": delta})
        if status == 200:
            return Adjusted(True, Level(body["on_hand"], body["reserved"]))
        if status == 409 and (body or {}).get("title") == "Not enough free units":
            return Adjusted(False, None)
        raise Rejected(f"adjust {sku} {delta:+d} ({adjustment_id}): {status} {body}")
