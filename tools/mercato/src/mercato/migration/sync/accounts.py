"""identity's side, through its record endpoints only (identity stays the owner of its
data): an account, hash included, read and stated whole (``PUT``, idempotent, guarded by
``If-Match``), and its addresses, with the sync's signed service identity (ADR 0031)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from chassis.service_identity import CallerSigner

from mercato.migration.sync.client import Rejected, ServiceClient, Stale, Stored, detail
from mercato.migration.sync.records import Account, Address


def account_of(doc: dict[str, Any]) -> Account:
    return Account(email=doc["email"], name=doc["name"], password_hash=doc["password_hash"])


def address_of(doc: dict[str, Any]) -> Address:
    return Address(owner=doc["user_id"], recipient=doc["name"], line1=doc["line1"],
                   city=doc["city"], postal_code=doc["postal_code"], country=doc["country"])


class Identity(ServiceClient):
    def __init__(self, base_url: Callable[[], Awaitable[str]], signer: CallerSigner,
                 timeout_s: float = 5.0) -> None:
        super().__init__("identity", base_url, signer, timeout_s)

    async def _record(self, user_id: uuid.UUID) -> tuple[dict[str, Any], str] | None:
        status, body, headers = await self._call("GET", f"/api/identity/accounts/{user_id}")
        if status == 404:
            return None
        if status != 200:
            raise Rejected(f"reading account {user_id}: {status} {detail(body)}")
        return body, headers.get("ETag", "")

    async def read(self, user_id: uuid.UUID) -> Stored[Account] | None:
        found = await self._record(user_id)
        if found is None:
            return None
        body, etag = found
        return Stored(account_of(body), body["version"], etag)

    async def put(self, user_id: uuid.UUID, record: Account,
                  if_match: str | None) -> Stored[Account]:
        status, body, headers = await self._call(
            "PUT", f"/api/identity/accounts/{user_id}",
            json={"email": record.email, "name": record.name,
                  "password_hash": record.password_hash},
            headers={"If-Match": if_match} if if_match else None)
        if status == 412:
            raise Stale(str(user_id))
        if status not in (200, 201):
            raise Rejected(f"{status} {detail(body)}")
        return Stored(account_of(body), body["version"], headers.get("ETag", ""))

    async def read_address(self, user_id: uuid.UUID,
                           address_id: uuid.UUID) -> Stored[Address] | None:
        found = await self._record(user_id)
        doc = None if found is None else next(
            (a for a in found[0]["addresses"] if a["id"] == str(address_id)), None)
        return None if doc is None else Stored(address_of(doc), 0, "", doc)

    async def put_address(self, address_id: uuid.UUID, record: Address,
                          current: Stored[Address] | None) -> Stored[Address]:
        # What the monolith has no column for (a second line, a phone) is kept as it is.
        kept = current.doc if current is not None and current.doc else {}
        status, body, _ = await self._call(
            "PUT", f"/api/identity/accounts/{record.owner}/addresses/{address_id}",
            json={"name": record.recipient, "line1": record.line1,
                  "line2": kept.get("line2"), "city": record.city,
                  "postal_code": record.postal_code, "country": record.country,
                  "phone": kept.get("phone")})
        if status not in (200, 201):
            raise Rejected(f"{status} {detail(body)}")
        return Stored(address_of(body), 0, "", body)

    async def account_ids(self, after: str | None, limit: int = 100) -> list[str]:
        """A page of account ids in id order (the backfill's reverse pass)."""
        query = f"?limit={limit}" + (f"&after={after}" if after else "")
        status, body, _ = await self._call("GET", f"/api/identity/accounts{query}")
        if status != 200:
            raise Rejected(f"listing accounts: {status} {detail(body)}")
        return [str(i) for i in body["ids"]]

    async def address_ids(self, user_id: uuid.UUID) -> list[uuid.UUID]:
        found = await self._record(user_id)
        return [] if found is None else [uuid.UUID(a["id"]) for a in found[0]["addresses"]]
