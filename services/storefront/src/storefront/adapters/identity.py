"""Signing a customer in, for the BFF: the one place that talks OAuth to identity.

The storefront is the confidential client ``storefront`` of identity's authorization code
flow with PKCE (ADR 0022): the browser signs in on identity's own page
(``/api/identity/authorize``, through the edge: the storefront never sees a password), and
the BFF exchanges the code it gets back (``grant_type=authorization_code``, the verifier,
HTTP Basic client authentication). Then the refresh grant. The password grant stays for
scripts and tests, not for browsers.

The tokens never reach the browser: the session store keeps them server-side.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

from chassis.http_client import ServiceClient, UpstreamUnavailable

# The edge writes the browser's address here; identity throttles failed sign-ins per
# (account, client address), so the BFF passes it on instead of being every client.
CLIENT_ADDRESS_HEADER = "x-mercato-client-address"
# Where the browser goes to sign in: identity's page, behind the same edge as the shop.
AUTHORIZE_PATH = "/api/identity/authorize"


def new_verifier() -> str:
    """A PKCE code verifier (RFC 7636 §4.1): 64 random bytes, 86 characters of base64url."""
    return secrets.token_urlsafe(64)


def s256(verifier: str) -> str:
    """The S256 code challenge of a verifier (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(*, client_id: str, redirect_uri: str, state: str, verifier: str) -> str:
    from urllib.parse import urlencode

    return AUTHORIZE_PATH + "?" + urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
        "state": state, "code_challenge": s256(verifier), "code_challenge_method": "S256"})


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
                 timeout_s: float | None = None, client_id: str = "storefront",
                 client_secret: str = "") -> None:
        self._client = client
        self._base = identity_url.rstrip("/")
        # Password hashing makes sign-up slow by design.
        self._timeout_s = timeout_s
        self.client_id = client_id
        self._client_secret = client_secret

    def _basic(self) -> str:
        # RFC 6749 §2.3.1: both parts form-urlencoded before base64.
        from urllib.parse import quote_plus

        pair = f"{quote_plus(self.client_id)}:{quote_plus(self._client_secret)}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    async def _token(self, fields: dict[str, str], client_address: str | None, *,
                     client_auth: bool = False) -> Tokens:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if client_address:
            headers[CLIENT_ADDRESS_HEADER] = client_address
        if client_auth:
            headers["Authorization"] = self._basic()
        response = await self._client.post(f"{self._base}/api/identity/token",
                                           data=_form(fields), headers=headers,
                                           timeout_s=self._timeout_s)
        doc = _json(response.body)
        if response.status == 200 and "access_token" in doc:
            return Tokens(access_token=str(doc["access_token"]),
                          refresh_token=str(doc.get("refresh_token", "")),
                          expires_at=time.time() + float(doc.get("expires_in", 300)))
        if 400 <= response.status < 500:
            raise SignInRefused(str(doc.get("error_description") or doc.get("detail")
                                    or doc.get("error") or "identity refused the grant"),
                                retry_after=response.headers.get("Retry-After"))
        raise UpstreamUnavailable("identity", f"token endpoint answered {response.status}",
                                  status=response.status)

    async def exchange_code(self, code: str, *, verifier: str, redirect_uri: str) -> Tokens:
        """The authorization code for tokens; ``SignInRefused`` when identity refuses it
        (spent, expired, another verifier or redirect URI, or our own credentials)."""
        return await self._token({"grant_type": "authorization_code", "code": code,
                                  "redirect_uri": redirect_uri, "code_verifier": verifier},
                                 None, client_auth=True)

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
