"""Who is calling: every call one service makes to another carries the caller's own signed
identity, and the receiver checks it (ADR 0023).

The caller signs a short-lived token with the ed25519 key it already holds for its registry
entries (``<P>_REGISTRY_SIGNING_KEY``); the receiver verifies it with that service's public
key, which every service already holds (``<P>_REGISTRY_TRUSTED_KEYS``). The token is a JWT
(EdDSA) in the ``Mercato-Caller`` header: ``iss`` the calling service, ``aud`` the service
called, a 60 s lifetime. It is the shape of an OAuth2 client assertion (RFC 7523), made by
the caller itself: no round trip to identity per call or per minute, and nothing for
identity to be down for.

The header's plain value (the caller's name, as before) is never trusted: a handler that
needs to know its caller depends on ``chassis.deps.ServiceCaller``, which verifies.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chassis.registry_keys import TrustedKeys, private_key_of

TOKEN_TTL_S = 60
# A token is reused for calls to the same service while it has this much life left: signing
# per call would cost an ed25519 signature and a JWT encoding on every request.
REUSE_MIN_LEFT_S = 30
LEEWAY_S = 5
ALGORITHM = "EdDSA"


class InvalidCaller(Exception):
    """The call's identity is missing, malformed, expired, for someone else or forged."""


class CallerSigner:
    """Makes this service's identity token for a call to ``target``."""

    def __init__(self, service: str, private_b64: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self._key: Ed25519PrivateKey = private_key_of(private_b64)
        self._clock = clock
        self._cache: dict[str, tuple[str, float]] = {}

    def token_for(self, target: str) -> str:
        now = self._clock()
        cached = self._cache.get(target)
        if cached is not None and cached[1] - now > REUSE_MIN_LEFT_S:
            return cached[0]
        expires = now + TOKEN_TTL_S
        token = jwt.encode({"iss": self.service, "aud": target, "iat": int(now),
                            "exp": int(expires), "jti": uuid.uuid4().hex},
                           self._key, algorithm=ALGORITHM)
        self._cache[target] = (token, expires)
        return token


class CallerVerifier:
    """Checks the identity token of a call made to ``service``."""

    def __init__(self, service: str, trusted: TrustedKeys | Mapping[str, str],
                 clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self._trusted = trusted if isinstance(trusted, TrustedKeys) else TrustedKeys(trusted)
        self._clock = clock

    def verify(self, token: str) -> str:
        """The calling service's name, or ``InvalidCaller`` saying why not."""
        try:
            claimed = jwt.decode(token, options={"verify_signature": False})
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidCaller("not a service identity token") from exc
        issuer = claimed.get("iss")
        key = self._trusted.public_key(issuer) if isinstance(issuer, str) else None
        if key is None or header.get("alg") != ALGORITHM:
            raise InvalidCaller(f"no trusted key for caller {issuer!r}")
        try:
            # Times are checked below against our clock (PyJWT's own would use time.time).
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=self.service,
                                issuer=issuer, options={"require": ["iss", "aud", "exp", "iat"],
                                                        "verify_exp": False,
                                                        "verify_iat": False})
        except jwt.InvalidAudienceError as exc:
            raise InvalidCaller(f"the caller's token is not for {self.service}") from exc
        except jwt.PyJWTError as exc:
            raise InvalidCaller(f"the caller's token does not verify: {exc}") from exc
        now, exp, iat = self._clock(), claims["exp"], claims["iat"]
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise InvalidCaller("the caller's token has no valid times")
        if exp < now - LEEWAY_S:
            raise InvalidCaller("the caller's token has expired")
        if iat > now + LEEWAY_S or exp - iat > TOKEN_TTL_S + LEEWAY_S:
            raise InvalidCaller("the caller's token is issued in the future or lives too long")
        return issuer
