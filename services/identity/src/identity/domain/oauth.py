"""OAuth 2 clients and authorization codes (RFC 6749 §4.1 with PKCE, RFC 7636).

A client is registered with the exact redirect URIs it may be sent back to; a code is bound
to the client, the redirect URI and the PKCE challenge it was asked with, lives 60 seconds
and is redeemed once. Nothing here knows HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from identity.domain.errors import IdentityError

CODE_TTL = timedelta(seconds=60)
CLIENT_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# RFC 7636 §4.1: 43 to 128 unreserved characters.
CODE_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
# BASE64URL(SHA256(verifier)) without padding is always 43 characters.
S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
# RFC 6749 §3.3: scope tokens of %x21 / %x23-5B / %x5D-7E, separated by single spaces.
SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")
MAX_REDIRECT_URI = 2000
MAX_REDIRECT_URIS = 10
MAX_SCOPE = 200
# A client secret is compared by digest, not by argon2: it must be random and long, so there
# is nothing to brute-force offline (mercato up makes 256-bit ones).
MIN_CLIENT_SECRET = 32
MAX_CLIENT_SECRET = 256
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class OAuthClientError(IdentityError):
    """A client registration the rules refuse."""


class AuthorizationCodeRejected(IdentityError):
    """A code that may not be redeemed (expired, for another client or redirect URI, or
    the verifier does not match its challenge)."""


class AuthorizationCodeReused(AuthorizationCodeRejected):
    """A code came back after it was redeemed: someone else holds a copy of it."""

    def __init__(self, refresh_family_id: uuid.UUID | None) -> None:
        super().__init__("this authorization code was already used")
        self.refresh_family_id = refresh_family_id


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_client_id(raw: str) -> str:
    if not CLIENT_ID.fullmatch(raw):
        raise OAuthClientError("a client id has 1 to 64 characters: lower-case letters, "
                               "digits, '.', '_' and '-', starting with a letter or digit")
    return raw


def check_redirect_uri(raw: str) -> str:
    """An absolute http(s) URI without a fragment (RFC 6749 §3.1.2); plain http only to
    the machine itself (RFC 8252 §7.3), where nobody on the network can read the code."""
    if len(raw) > MAX_REDIRECT_URI or any(ch.isspace() or ord(ch) < 0x20 for ch in raw):
        raise OAuthClientError(f"a redirect URI has at most {MAX_REDIRECT_URI} characters "
                               "and no spaces or control characters")
    try:
        parts = urlsplit(raw)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise OAuthClientError(f"{raw!r} is not a valid URI") from None
    if parts.scheme not in ("https", "http") or not host:
        raise OAuthClientError(f"{raw!r} is not an absolute http or https URI")
    if parts.fragment or "#" in raw:
        raise OAuthClientError(f"{raw!r} has a fragment; a redirect URI must not")
    if parts.username is not None or parts.password is not None:
        raise OAuthClientError(f"{raw!r} holds credentials; a redirect URI must not")
    if parts.scheme == "http" and host not in _LOOPBACK_HOSTS:
        raise OAuthClientError(f"{raw!r}: plain http is allowed only for localhost, "
                               "127.0.0.1 and [::1]; use https")
    return raw


def check_client_secret(raw: str) -> str:
    if not MIN_CLIENT_SECRET <= len(raw) <= MAX_CLIENT_SECRET or not raw.isascii() \
            or not raw.isprintable() or " " in raw:
        raise OAuthClientError(f"a client secret has {MIN_CLIENT_SECRET} to "
                               f"{MAX_CLIENT_SECRET} printable ASCII characters without "
                               "spaces (make it random: secrets.token_urlsafe(32))")
    return raw


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()) \
        .rstrip(b"=").decode("ascii")


def verifier_matches(verifier: str, challenge: str) -> bool:
    """RFC 7636 §4.6 for the S256 method (the only one mercato accepts)."""
    if not CODE_VERIFIER.fullmatch(verifier):
        return False
    return hmac.compare_digest(s256(verifier), challenge)


@dataclass(slots=True)
class OAuthClient:
    """A registered client. Confidential clients (a server, like the storefront) prove
    themselves with a secret of which only the digest is kept; public ones cannot keep a
    secret and rely on PKCE alone."""

    client_id: str
    redirect_uris: tuple[str, ...]
    secret_hash: str | None
    created_at: datetime

    @classmethod
    def register(cls, *, client_id: str, redirect_uris: list[str] | tuple[str, ...],
                 secret: str | None, now: datetime) -> OAuthClient:
        uris = tuple(dict.fromkeys(check_redirect_uri(u) for u in redirect_uris))
        if not uris:
            raise OAuthClientError("a client needs at least one redirect URI")
        if len(uris) > MAX_REDIRECT_URIS:
            raise OAuthClientError(f"a client has at most {MAX_REDIRECT_URIS} redirect URIs")
        return cls(client_id=check_client_id(client_id), redirect_uris=uris,
                   secret_hash=digest(check_client_secret(secret)) if secret is not None
                   else None, created_at=now)

    @property
    def confidential(self) -> bool:
        return self.secret_hash is not None

    def redirects_to(self, uri: str) -> bool:
        # Exact string comparison (RFC 9700 §4.1.3): no prefix, no normalisation, so an
        # attacker cannot find a look-alike URI that still passes.
        return uri in self.redirect_uris

    def secret_matches(self, secret: str) -> bool:
        if self.secret_hash is None:
            return False
        return hmac.compare_digest(digest(secret), self.secret_hash)

    def same_registration(self, other: OAuthClient) -> bool:
        return (self.redirect_uris, self.secret_hash) == (other.redirect_uris,
                                                           other.secret_hash)


@dataclass(frozen=True, slots=True)
class IssuedCode:
    code: AuthorizationCode
    secret: str = field(repr=False)


@dataclass(slots=True)
class AuthorizationCode:
    """A code handed to the browser on its way back to the client. Only its digest is
    stored; redeeming it starts a refresh-token family, remembered so that a code replayed
    later revokes what was issued from it (RFC 6749 §4.1.2)."""

    code_hash: str
    client_id: str
    redirect_uri: str
    user_id: uuid.UUID
    code_challenge: str
    scope: str
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    refresh_family_id: uuid.UUID | None = None

    @classmethod
    def issue(cls, *, client_id: str, redirect_uri: str, user_id: uuid.UUID,
              code_challenge: str, scope: str, now: datetime) -> IssuedCode:
        secret = secrets.token_urlsafe(32)
        return IssuedCode(cls(code_hash=digest(secret), client_id=client_id,
                              redirect_uri=redirect_uri, user_id=user_id,
                              code_challenge=code_challenge, scope=scope, issued_at=now,
                              expires_at=now + CODE_TTL), secret)

    def redeem(self, *, client_id: str, redirect_uri: str, code_verifier: str,
               now: datetime) -> None:
        """Spends the code, or says why it cannot be. A code redeemed before raises
        ``AuthorizationCodeReused`` whoever asks: the caller revokes its tokens."""
        if self.used_at is not None:
            raise AuthorizationCodeReused(self.refresh_family_id)
        if client_id != self.client_id:
            raise AuthorizationCodeRejected("this code was issued to another client")
        if now >= self.expires_at:
            raise AuthorizationCodeRejected("this authorization code has expired")
        if redirect_uri != self.redirect_uri:
            raise AuthorizationCodeRejected(
                "redirect_uri differs from the one the code was requested with")
        if not verifier_matches(code_verifier, self.code_challenge):
            raise AuthorizationCodeRejected("code_verifier does not match the code_challenge")
        self.used_at = now

    def started(self, refresh_family_id: uuid.UUID) -> None:
        self.refresh_family_id = refresh_family_id
