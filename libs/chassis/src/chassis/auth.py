"""Bearer-token checks every service does itself, even behind the edge.

Only RS256 is accepted; the header's ``alg`` is checked against the allowlist before any
key is looked up, so ``alg: none`` and HS256-signed-with-the-public-key tokens fail early.
``exp``, ``iss``, ``aud`` and ``sub`` are required. Keys come from a ``KeySource``: the
identity service reads its own; every other service fetches the JWKS (cached, refetched at
most every few seconds when an unknown ``kid`` shows up, e.g. after a key rotation).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import jwt
import structlog
from jwt.algorithms import RSAAlgorithm

from chassis.errors import Forbidden, ServiceUnavailable, Unauthorized

ALLOWED_ALGORITHMS = ("RS256",)
log = structlog.get_logger("chassis.auth")


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    roles: frozenset[str]
    email: str | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def can_act_for(self, owner_id: str) -> bool:
        """Object-level check: the owner or an admin."""
        return self.is_admin or self.subject == owner_id


class KeySource(Protocol):
    async def key_for(self, kid: str) -> Any | None: ...


class RemoteJwks:
    """JWKS fetched over HTTP; the URL may name a service (resolved through the registry)."""

    def __init__(self, url: str, session_provider: Callable[[], aiohttp.ClientSession],
                 resolve: Callable[[str], Awaitable[str]] | None = None,
                 max_age_s: float = 300.0, min_refetch_s: float = 5.0) -> None:
        self._url = url
        self._session = session_provider
        self._resolve = resolve
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._max_age = max_age_s
        self._min_refetch = min_refetch_s
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str) -> Any | None:
        now = time.monotonic()
        if kid in self._keys and now - self._fetched_at < self._max_age:
            return self._keys[kid]
        async with self._lock:
            if kid in self._keys and time.monotonic() - self._fetched_at < self._max_age:
                return self._keys[kid]
            # Unknown kids must not turn every forged token into a JWKS request.
            if time.monotonic() - self._fetched_at >= self._min_refetch or not self._keys:
                failed = await self._refresh()
                if failed is not None and kid not in self._keys:
                    # We cannot tell a new key from a forged one: say so, rather than a 401
                    # that would log a valid user out, or a 500.
                    raise ServiceUnavailable(
                        "tokens cannot be checked right now: the identity keys are unreachable",
                        headers={"Retry-After": "2"})
        return self._keys.get(kid)

    async def warm(self, give_up_after_s: float = 120.0) -> bool:
        """Fetch the keys ahead of the first token, retrying while identity starts.

        With the keys cached, token checks keep working through a registry (NATS) outage;
        without them, the first token after such an outage could not be checked. Identity
        starting after this service is the usual case, not a fault: the failed tries are
        logged at info, and a warning only when the keys are still unreachable at the end.
        """
        delay, deadline = 0.2, time.monotonic() + give_up_after_s
        tries, error = 0, None
        while time.monotonic() < deadline:
            tries += 1
            async with self._lock:
                error = await self._refresh(warming=True)
                if error is None:
                    return True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        log.warning("jwks_fetch_failed", url=self._url, error=error, tries=tries,
                    gave_up_after_s=give_up_after_s)
        return False

    async def _refresh(self, *, warming: bool = False) -> str | None:
        """Fetch the JWKS; on any failure keep the old keys and return the error (else None)."""
        try:
            url = await self._resolve(self._url) if self._resolve else self._url
            async with self._session().get(url, timeout=aiohttp.ClientTimeout(total=3)) as resp:
                resp.raise_for_status()
                document = await resp.json(content_type=None)
            keys = keys_from_jwks(document)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            (log.info if warming else log.warning)(
                "jwks_not_ready" if warming else "jwks_fetch_failed", url=self._url, error=error)
            self._fetched_at = time.monotonic()
            return error
        self._keys = keys
        self._fetched_at = time.monotonic()
        return None


def keys_from_jwks(document: dict[str, Any]) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for jwk in document.get("keys", []):
        if jwk.get("kty") == "RSA" and jwk.get("kid") and jwk.get("alg", "RS256") == "RS256":
            keys[jwk["kid"]] = RSAAlgorithm.from_jwk(jwk)
    return keys


class TokenVerifier:
    def __init__(self, keys: KeySource, *, issuer: str, audience: str, leeway_s: int = 10) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s

    @property
    def key_source(self) -> KeySource:
        return self._keys

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("the token is malformed") from exc
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise Unauthorized("the token's algorithm is not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("the token has no key id")
        key = await self._keys.key_for(kid)
        if key is None:
            raise Unauthorized("the token was signed with an unknown key")
        try:
            claims = jwt.decode(token, key, algorithms=list(ALLOWED_ALGORITHMS),
                                audience=self._audience, issuer=self._issuer, leeway=self._leeway,
                                options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("the token has expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("the token is not valid") from exc
        roles = claims.get("roles") or []
        if not isinstance(roles, list):
            raise Unauthorized("the token's roles are malformed")
        return Principal(subject=str(claims["sub"]), roles=frozenset(map(str, roles)),
                         email=claims.get("email"), claims=claims)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("a bearer token is required")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def require_role(principal: Principal, role: str) -> Principal:
    if role not in principal.roles:
        raise Forbidden(f"this needs the '{role}' role")
    return principal
