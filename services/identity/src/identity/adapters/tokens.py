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

    async def issue_for(self, subject: str, roles: list[str], email: str,
                        now: datetime) -> AccessToken:
        key = await self._keys.active_key()
        issued_at = int(now.timestamp())
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": subject,
            "roles": roles,
            "email": email,
            "iat": issued_at,
            "exp": issued_at + self._ttl_s,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, key.private_key, algorithm="RS256",
                           headers={"kid": key.kid, "typ": "JWT"})
        return AccessToken(token=token, expires_in=self._ttl_s, kid=key.kid)
