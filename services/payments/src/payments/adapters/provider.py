"""The payments side of the provider protocol (aiohttp client, a timeout on every call).

Authorize is the one call that moves money without our own id on it, so it is never blindly
repeated: after a timeout, a connection error or a 5xx we first ask the provider for the charge
under our idempotency key (the payment id). Found: its recorded outcome is the answer. Not
found: the authorize is sent again with the same key (the provider makes at most one charge per
key). If the provider cannot be reached for all ``attempts``, ``ProviderUnavailable`` is raised:
the command consumer naks and retries with backoff, and after ``max_deliver`` the command goes
to the dead-letter stream (operators replay it with ``mercato dlq replay``).

Capture, void and refund name the provider's charge and are idempotent there, so they are
simply retried. So is vaulting a card (``tokenize``): it always carries an idempotency key,
and the provider answers a repeat with the payment method it made the first time.

The card number handed to ``tokenize`` goes into the request body only: it is never logged,
and no exception raised here quotes it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from chassis.http_client import traced_session
from chassis.sidedoor import bearer_header

log = structlog.get_logger("payments.provider_client")

# What releases a charge the provider holds, by its status.
RELEASE = {"authorized": "void", "captured": "refund"}


class ProviderUnavailable(Exception):
    """The provider did not answer usefully (timeout, connection error, 5xx): try later."""


class ProviderRefused(Exception):
    """The provider answered that the operation cannot be done (4xx)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class VaultedCard:
    """A payment method as the provider's vault answers it: never the number."""

    id: str
    last4: str
    brand: str

    @classmethod
    def of(cls, body: dict[str, Any]) -> VaultedCard:
        return cls(str(body["id"]), str(body["last4"]), str(body.get("brand") or "unknown"))


@dataclass(frozen=True, slots=True)
class Charge:
    id: str
    status: str
    decline_reason: str | None

    @classmethod
    def of(cls, body: dict[str, Any]) -> Charge:
        return cls(str(body["id"]), str(body["status"]), body.get("decline_reason"))


class _Transient(Exception):
    pass


class ProviderClient:
    """One per service process; the aiohttp session is made on first use (inside the loop)."""

    def __init__(self, base_url: str, *, timeout_s: float, attempts: int = 3,
                 retry_delay_s: float = 0.2, api_token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = bearer_header(api_token)
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.attempts = max(1, attempts)
        self.retry_delay_s = retry_delay_s
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = traced_session(timeout=self.timeout, headers=self._headers)
        return self._session

    async def _call(self, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
        try:
            async with self._http().request(method, self.base_url + path, **kw) as resp:
                if resp.status >= 500:
                    raise _Transient(f"{method} {path}: HTTP {resp.status}")
                body = await resp.json(content_type=None)
                return resp.status, body if isinstance(body, dict) else {}
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise _Transient(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    async def find(self, idempotency_key: str) -> Charge | None:
        """The charge made under our key, or None (raises _Transient if unreachable)."""
        _, body = await self._call("GET", "/charges", params={"idempotency_key": idempotency_key})
        items = body.get("items") or []
        return Charge.of(items[0]) if items else None

    async def tokenize(self, card_number: str, idempotency_key: str) -> VaultedCard:
        """Vault the card; the same key and card get the same payment method again.
        ProviderRefused("invalid_card" | "idempotency_key_reused"), or ProviderUnavailable."""
        payload = {"card_number": card_number, "idempotency_key": idempotency_key}
        last_error = ""
        for attempt in range(1, self.attempts + 1):
            try:
                status, body = await self._call("POST", "/payment-methods", json=payload)
            except _Transient as exc:
                last_error = str(exc)
                if attempt < self.attempts:
                    await asyncio.sleep(self.retry_delay_s * attempt)
                continue
            if status >= 400:
                raise ProviderRefused(str(body.get("error") or f"http_{status}"))
            try:
                return VaultedCard.of(body)
            except KeyError as exc:
                raise ProviderUnavailable("tokenize: the provider's answer has no id") from exc
        raise ProviderUnavailable(f"tokenize: {last_error}")

    async def authorize(self, idempotency_key: str, amount: str, currency: str,
                        payment_method: str) -> Charge:
        payload = {"idempotency_key": idempotency_key, "amount": amount, "currency": currency,
                   "payment_method": payment_method}
        last_error = ""
        for attempt in range(1, self.attempts + 1):
            try:
                status, body = await self._call("POST", "/charges", json=payload)
                if status >= 400:
                    raise ProviderRefused(str(body.get("error") or f"http_{status}"))
                return Charge.of(body)
            except _Transient as exc:
                last_error = str(exc)
                log.warning("provider_authorize_unanswered", payment_id=idempotency_key,
                            attempt=attempt, error=last_error)
            # Never charge blindly again: did the provider record one under our key?
            try:
                found = await self.find(idempotency_key)
            except _Transient as exc:
                last_error = str(exc)
                found = None
            if found is not None:
                log.info("provider_charge_found_by_key", payment_id=idempotency_key,
                         status=found.status)
                return found
            if attempt < self.attempts:
                await asyncio.sleep(self.retry_delay_s * attempt)
        raise ProviderUnavailable(f"authorize {idempotency_key}: {last_error}")

    async def change(self, charge_id: str, operation: str) -> Charge:
        """capture, void or refund; idempotent at the provider, so retried as is."""
        last_error = ""
        for attempt in range(1, self.attempts + 1):
            try:
                status, body = await self._call("POST", f"/charges/{charge_id}/{operation}")
            except _Transient as exc:
                last_error = str(exc)
                if attempt < self.attempts:
                    await asyncio.sleep(self.retry_delay_s * attempt)
                continue
            if status >= 400:
                raise ProviderRefused(str(body.get("error") or f"http_{status}"))
            return Charge.of(body)
        raise ProviderUnavailable(f"{operation} {charge_id}: {last_error}")

    async def void_by_key(self, idempotency_key: str) -> Charge | None:
        """Release whatever charge exists under our key: void an authorization, refund a
        capture (for a void that finds no payment row: an authorize or a charge whose
        transaction rolled back after the provider said yes)."""
        try:
            found = await self.find(idempotency_key)
        except _Transient as exc:
            raise ProviderUnavailable(f"find {idempotency_key}: {exc}") from exc
        if found is None or found.status not in RELEASE:
            return found
        return await self.change(found.id, RELEASE[found.status])
