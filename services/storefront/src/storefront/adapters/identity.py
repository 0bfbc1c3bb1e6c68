"""Signing a customer in, for the BFF: the one place that talks OAuth to identity.

Today: the password grant (``POST /api/identity/token grant_type=password``), made by the
BFF with what the person typed in its own sign-in form, and the refresh grant. When
identity serves the authorization code flow with PKCE, ``sign_in`` becomes the code
exchange (``grant_type=authorization_code`` with the verifier, as the confidential client
``storefront``) and the sign-in page a redirect to ``/api/identity/authorize``: nothing
else in the storefront changes, since everything else sees only ``Tokens``.

The tokens never reach the browser: the session store keeps them server-side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from chassis.http_client import ServiceClient, UpstreamUnavailable

# The edge writes the browser's address here; identity throttles failed sign-ins per
# (account, client address), so the BFF passes it on instead of being every client.
CLIENT_ADDRESS_HEADER = "x-mercato-client-address"


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_at: float  # epoch seconds


class SignInRefused(Exception):
    """Wrong email or password, a throttled account, or a refresh token no longer valid."""

    def __init__(self, detail: str, *, retry_after: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class RegistrationRefused(Exception):
    def __init__(self, detail: str, *, status: int) -> None:
        super().__init__(detail)
        self.detail, self.status = detail, status


def _form(fields: dict[str, str]) -> bytes:
    from urllib.parse import urlencode

    return urlencode(fields).encode()


class IdentityClient:
    def __init__(self, client: ServiceClient, identity_url: str, *,
                 timeout_s: float | None = None) -> None:
        self._client = client
        self._base = identity_url.rstrip("/")
        # Password hashing makes sign-in and sign-up slow by design.
        self._timeout_s = timeout_s

    async def _token(self, fields: dict[str, str], client_address: str | None) -> Tokens:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if client_address:
            headers[CLIENT_ADDRESS_HEADER] = client_address
        response = await self._client.post(f"{self._base}/api/identity/token",
                                           data=_form(fields), headers=headers,
                                           timeout_s=self._timeout_s)
        doc = _json(response.body)
        if response.status == 200 and "access_token" in doc:
            return Tokens(access_token=str(doc["access_token"]),
                          refresh_token=str(doc.get("refresh_token", "")),
                          expires_at=time.time() + float(doc.get("expires_in", 300)))
        if 400 <= response.status < 500:
            raise SignInRefused(str(doc.get("detail") or "the email or password is wrong"),
                                retry_after=response.headers.get("Retry-After"))
        raise UpstreamUnavailable("identity", f"token endpoint answered {response.status}",
                                  status=response.status)

    async def sign_in(self, email: str, password: str, *,
                      client_address: str | None = None) -> Tokens:
        return await self._token({"grant_type": "password", "username": email,
                                  "password": password}, client_address)

    async def refresh(self, refresh_token: str) -> Tokens:
        return await self._token({"grant_type": "refresh_token",
                                  "refresh_token": refresh_token}, None)

    async def me(self, access_token: str) -> dict[str, Any]:
        """``{id, email, name, roles}`` of the token's account."""
        response = await self._client.get(f"{self._base}/api/identity/me",
                                          authorization=f"Bearer {access_token}")
        doc = _json(response.body)
        if response.status == 200 and "id" in doc:
            return doc
        if 400 <= response.status < 500:
            raise SignInRefused("the session is no longer valid")
        raise UpstreamUnavailable("identity", f"me answered {response.status}",
                                  status=response.status)

    async def register(self, email: str, password: str, name: str, *,
                       client_address: str | None = None) -> dict[str, Any]:
        headers = {CLIENT_ADDRESS_HEADER: client_address} if client_address else None
        response = await self._client.post(f"{self._base}/api/identity/register",
                                           json={"email": email, "password": password,
                                                 "name": name}, headers=headers,
                                           timeout_s=self._timeout_s)
        doc = _json(response.body)
        if response.status == 201:
            return doc
        if 400 <= response.status < 500:
            raise RegistrationRefused(_registration_detail(doc, response.status),
                                      status=response.status)
        raise UpstreamUnavailable("identity", f"register answered {response.status}",
                                  status=response.status)


def _json(body: bytes) -> dict[str, Any]:
    import orjson

    try:
        doc = orjson.loads(body) if body else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _registration_detail(doc: dict[str, Any], status: int) -> str:
    if status == 409:
        return "An account with this email already exists. Sign in instead."
    errors = doc.get("errors")
    if isinstance(errors, list) and errors:
        parts = []
        for e in errors[:3]:
            if isinstance(e, dict):
                loc = e.get("loc") or e.get("field") or []
                where = loc[-1] if isinstance(loc, list) and loc else loc
                parts.append(f"{where}: {e.get('msg') or e.get('message')}")
        if parts:
            return "; ".join(parts)
    return str(doc.get("detail") or "the registration was refused")
