"""The services' access tokens, accepted by the shop once its customers sign in there
(ADR 0032): the monolith trusts the new identity provider, as a strangler migration's old
application is taught to, so a customer whose sign-in moved keeps using the paths still
served here (orders, checkout) with the token the services gave them.

The checks are the services' own (chassis ``TokenVerifier``, which the shop may not import):
RS256 only, the header's ``alg`` checked before any key is looked up, a ``kid`` required,
``exp``, ``iss``, ``aud`` and ``sub`` required, 10 s leeway. Keys come from identity's JWKS
through PyJWT's ``PyJWKClient``, cached; an unknown ``kid`` refetches at most every few
seconds, so forged key ids cannot turn each request into a fetch. The subject is the
account's UUID, which the shop knows as ``customers.services_id``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import jwt

from legacy.domain import Problem

ALLOWED_ALGORITHMS = ("RS256",)


def looks_like_jwt(token: str) -> bool:
    # The shop's own session tokens are token_urlsafe: no dots. A JWT has exactly two.
    return token.count(".") == 2


class ServiceTokens:
    """Verifies an access token of the services' identity provider; returns its subject."""

    def __init__(self, jwks_url: str, *, issuer: str, audience: str, leeway_s: int = 10,
                 max_age_s: float = 300.0, min_refetch_s: float = 5.0,
                 timeout_s: float = 3.0) -> None:
        # Its own cache is off: this class keeps the keys, and decides when to refetch.
        self._client = jwt.PyJWKClient(jwks_url, cache_jwk_set=False, timeout=timeout_s)
        self._issuer, self._audience, self._leeway = issuer, audience, leeway_s
        self._max_age, self._min_refetch = max_age_s, min_refetch_s
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def _fetch(self) -> bool:
        try:
            jwks = self._client.get_jwk_set(refresh=True)
        except jwt.PyJWTError:  # unreachable, not JSON, no usable key
            self._fetched_at = time.monotonic()
            return False
        self._keys = {k.key_id: k.key for k in jwks.keys
                      if k.key_id and k.key_type == "RSA" and k.algorithm_name == "RS256"}
        self._fetched_at = time.monotonic()
        return True

    def _fresh(self) -> bool:
        return time.monotonic() - self._fetched_at < self._max_age

    def _key(self, kid: str) -> Any | None:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if kid in self._keys and age < self._max_age:
                return self._keys[kid]
            if age >= self._min_refetch or not self._keys:
                if not self._fetch() and kid not in self._keys:
                    # A new key cannot be told from a forged one: neither a 401 that would
                    # sign a customer out, nor a 500.
                    raise Problem(503, "Sign-in check unavailable",
                                  "the identity provider's keys cannot be read right now; "
                                  "try again shortly")
            return self._keys.get(kid)

    async def subject(self, token: str) -> uuid.UUID:
        """The account the token is for, or ``Problem(401)`` saying why not."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _unauthorized("the token is malformed") from None
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise _unauthorized("the token's algorithm is not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _unauthorized("the token has no key id")
        key = self._keys.get(kid) if self._fresh() else None
        if key is None:  # a fetch may be due: PyJWKClient uses urllib, off the event loop
            key = await asyncio.to_thread(self._key, kid)
        if key is None:
            raise _unauthorized("the token was signed with an unknown key")
        try:
            claims = jwt.decode(token, key, algorithms=list(ALLOWED_ALGORITHMS),
                                audience=self._audience, issuer=self._issuer,
                                leeway=self._leeway,
                                options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError:
            raise _unauthorized("the token has expired") from None
        except jwt.PyJWTError:
            raise _unauthorized("the token is not valid") from None
        try:
            return uuid.UUID(str(claims["sub"]))
        except ValueError:
            raise _unauthorized("the token does not name a customer account") from None


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "Not signed in", detail)
