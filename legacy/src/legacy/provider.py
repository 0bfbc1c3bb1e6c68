"""The payment provider, as the shop has always called it: vault the card, charge it under
an idempotency key, capture after the order is stored, void when it is not.

A charge whose answer does not come in time is looked up by its key: the provider may have
made it (a timeout says nothing about the outcome), and charging again is never the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp

from legacy.domain import Problem


class ProviderUnavailable(Problem):
    def __init__(self, detail: str) -> None:
        super().__init__(503, "Payment provider unavailable", detail)


@dataclass(frozen=True)
class Charge:
    id: str
    status: str  # authorized | declined | captured | voided | refunded
    decline_reason: str | None
    card_last4: str

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Charge:
        return cls(id=str(doc["id"]), status=str(doc["status"]),
                   decline_reason=doc.get("decline_reason"), card_last4=str(doc["card_last4"]))


class PaymentProvider:
    def __init__(self, url: str, token: str | None, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self.headers, timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        try:
            async with self.session.request(method, f"{self.url}{path}", **kwargs) as resp:
                return resp.status, await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ProviderUnavailable(f"{type(exc).__name__}: {exc}"[:200]) from exc

    async def vault(self, card_number: str, key: str) -> str:
        status, doc = await self._call("POST", "/payment-methods",
                                       json={"card_number": card_number, "idempotency_key": key})
        if status == 400:
            raise Problem(422, "Invalid card", "the card number is not valid")
        if status not in (200, 201):
            raise ProviderUnavailable(f"vaulting the card answered {status}")
        return str(doc["id"])

    async def charge(self, key: str, amount: Decimal, currency: str, method: str) -> Charge:
        body = {"idempotency_key": key, "amount": f"{amount:.2f}", "currency": currency,
                "payment_method": method}
        try:
            status, doc = await self._call("POST", "/charges", json=body)
        except ProviderUnavailable:
            found = await self.find(key)
            if found is None:
                raise
            return found
        if status not in (200, 201):
            raise ProviderUnavailable(f"charging answered {status}")
        return Charge.of(doc)

    async def find(self, key: str) -> Charge | None:
        try:
            status, doc = await self._call("GET", "/charges", params={"idempotency_key": key})
        except ProviderUnavailable:
            return None
        if status != 200 or not doc.get("items"):
            return None
        return Charge.of(doc["items"][0])

    async def change(self, charge_id: str, operation: str) -> Charge:
        status, doc = await self._call("POST", f"/charges/{charge_id}/{operation}")
        if status != 200:
            raise ProviderUnavailable(f"{operation} of {charge_id} answered {status}")
        return Charge.of(doc)
