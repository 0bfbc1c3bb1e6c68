"""RS256 access tokens with the claims every mercato service checks (docs/internals.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

import jwt

from identity.adapters.keys import SigningKey
from identity.domain.model import User
from identity.service_layer.ports import AccessToken


class ActiveKey(Protocol):
    async def active_key(self) -> SigningKey: ...


class JwtIssuer:
    def __init__(self, keys: ActiveKey, *, issuer: str, audience: str, ttl_s: int) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._ttl_s = ttl_s

    async def issue(self, user: User, now: datetime) -> AccessToken:
        return await self.issue_for(str(user.id), list(user.role_names), user.email, now)

    async def issue_exchanged(self, user: User, now: datetime, *, actor: str,
                              ttl_s: int) -> AccessToken:
        # Customer only, whatever else the account may do: a service acting for a person
        # on the shop's paths never needs more (ADR 0032).
        roles = [r for r in user.role_names if r == "customer"]
        return await self.issue_for(str(user.id), roles, user.email, now, ttl_s=ttl_s,
                                    extra={"act": {"sub": actor}})

    async def issue_for(self, subject: str, roles: list[str], email: str,
                        now: datetime, *, ttl_s: int | None = None,
                        extra: dict[str, object] | None = None) -> AccessToken:
        key = await self._keys.active_key()
        issued_at = int(now.timestamp())
        ttl_s = self._ttl_s if ttl_s is None else ttl_s
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": subject,
            "roles": roles,
            "email": email,
            "iat": issued_at,
            "exp": issued_at + ttl_s,
            "jti": uuid.uuid4().hex,
            **(extra or {}),
        }
        token = jwt.encode(claims, key.private_key, algorithm="RS256",
                           headers={"kid": key.kid, "typ": "JWT"})
        return AccessToken(token=token, expires_in=ttl_s, kid=key.kid)
