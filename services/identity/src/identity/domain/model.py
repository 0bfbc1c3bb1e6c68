"""Accounts, addresses and refresh tokens, with the rules that govern them."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from identity.domain.countries import ISO_3166_ALPHA2
from identity.domain.errors import (
    InvalidAddress,
    RefreshTokenExpired,
    RefreshTokenReused,
    RefreshTokenRevoked,
)
from identity.domain.policy import check_name, clean_text, normalise_email


class Role(StrEnum):
    CUSTOMER = "customer"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    """Growing delays per (account, client), never a lock of the account.

    ``free_failures`` failures cost nothing; each failure from then on makes that pair wait
    ``base_delay * 2 ** (failures - free_failures)`` (at most ``max_delay``) before its next
    attempt is even checked. Another client, the owner's own device, is not delayed at all.
    A success clears the pair; its failures are forgotten ``forget_after`` the last one.
    """

    free_failures: int
    base_delay: timedelta
    max_delay: timedelta
    forget_after: timedelta

    def delay_after(self, failures: int) -> timedelta | None:
        if failures < self.free_failures:
            return None
        # Capped exponent: 2 ** 40 seconds already dwarfs any max_delay.
        doubling = min(failures - self.free_failures, 40)
        return min(self.base_delay * (2 ** doubling), self.max_delay)


def login_account_key(username: str) -> str:
    """The account half of a throttle key, whether or not such an account exists.

    Keyed by what was typed (trimmed, lower-cased as emails are stored), so an unknown
    account is throttled exactly like a known one and the answers cannot tell them apart;
    only a digest is stored, not the addresses people tried.
    """
    return hashlib.sha256(username.strip().lower().encode()).hexdigest()


@dataclass(slots=True)
class LoginFailures:
    """Failed sign-ins of one (account, client) pair."""

    account_key: str
    client: str
    failures: int = 0
    last_failure_at: datetime | None = None
    retry_at: datetime | None = None

    def wait_before_next_attempt(self, now: datetime) -> timedelta | None:
        """How long this pair must still wait, or None when it may try now."""
        if self.retry_at is None or now >= self.retry_at:
            return None
        return self.retry_at - now

    def record_failure(self, now: datetime, throttle: LoginThrottle) -> None:
        if self.last_failure_at is not None and now >= self.last_failure_at + throttle.forget_after:
            self.failures = 0
        self.failures += 1
        self.last_failure_at = now
        delay = throttle.delay_after(self.failures)
        self.retry_at = now + delay if delay is not None else None


@dataclass(slots=True)
class User:
    id: uuid.UUID
    email: str
    name: str
    password_hash: str
    roles: frozenset[Role]
    created_at: datetime
    version: int = 1

    @classmethod
    def register(cls, *, email: str, name: str, password_hash: str, now: datetime,
                 roles: frozenset[Role] = frozenset({Role.CUSTOMER})) -> User:
        # Every account is a customer; admin is granted on top, never instead.
        return cls(id=uuid.uuid4(), email=normalise_email(email), name=check_name(name),
                   password_hash=password_hash, roles=frozenset(roles) | {Role.CUSTOMER},
                   created_at=now)

    @property
    def role_names(self) -> list[str]:
        return sorted(role.value for role in self.roles)

    @property
    def is_admin(self) -> bool:
        return Role.ADMIN in self.roles

    def grant(self, role: Role) -> bool:
        """Adds ``role``; False when the user had it already."""
        if role in self.roles:
            return False
        self.roles = self.roles | {role}
        return True


_POSTAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]{0,18}[A-Za-z0-9]|[A-Za-z0-9]")
_PHONE = re.compile(r"\+?[0-9][0-9 ().-]{3,30}[0-9]")


@dataclass(frozen=True, slots=True)
class Address:
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    line1: str
    line2: str | None
    city: str
    postal_code: str
    country: str
    phone: str | None
    created_at: datetime

    @classmethod
    def create(cls, *, user_id: uuid.UUID, name: str, line1: str, line2: str | None, city: str,
               postal_code: str, country: str, phone: str | None, now: datetime) -> Address:
        def text(value: str, fld: str, max_chars: int) -> str:
            return clean_text(value, field=fld, max_chars=max_chars, error=InvalidAddress)

        def optional(value: str | None, fld: str, max_chars: int) -> str | None:
            if value is None:
                return None
            cleaned = clean_text(value, field=fld, max_chars=max_chars, required=False,
                                 error=InvalidAddress)
            return cleaned or None

        postal = text(postal_code, "postal_code", 20).upper()
        if not _POSTAL.fullmatch(postal):
            raise InvalidAddress("postal_code holds letters, digits, spaces and dashes only")
        code = country.strip().upper()
        if code not in ISO_3166_ALPHA2:
            raise InvalidAddress(f"country must be an ISO 3166-1 alpha-2 code, not {country!r}")
        phone_number = optional(phone, "phone", 32)
        if phone_number is not None and not _PHONE.fullmatch(phone_number):
            raise InvalidAddress("phone holds digits, spaces, ( ) . - and a leading + only")
        return cls(id=uuid.uuid4(), user_id=user_id, name=text(name, "name", 200),
                   line1=text(line1, "line1", 200), line2=optional(line2, "line2", 200),
                   city=text(city, "city", 100), postal_code=postal, country=code,
                   phone=phone_number, created_at=now)


def hash_refresh_secret(secret: str) -> str:
    """Only this digest is stored, so a copy of the table cannot be replayed as tokens.
    A fast hash suffices: the secret has 256 random bits, nothing to brute-force."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedRefreshToken:
    token: RefreshToken
    secret: str = field(repr=False)


@dataclass(slots=True)
class RefreshToken:
    """One link of a family: the chain of refresh tokens that grew out of one login.

    Each token is exchanged once. A token that comes back after its exchange means two
    parties hold the chain (one of them stole it) and nobody can tell which is legitimate,
    so the whole family is revoked and both must log in again (RFC 9700 §4.14.2).
    """

    id: uuid.UUID
    family_id: uuid.UUID
    user_id: uuid.UUID
    token_hash: str
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    revoked_at: datetime | None = None

    @classmethod
    def start_family(cls, user_id: uuid.UUID, now: datetime, ttl: timedelta) -> IssuedRefreshToken:
        return cls._issue(family_id=uuid.uuid4(), user_id=user_id, now=now, ttl=ttl)

    @classmethod
    def _issue(cls, *, family_id: uuid.UUID, user_id: uuid.UUID, now: datetime,
               ttl: timedelta) -> IssuedRefreshToken:
        secret = secrets.token_urlsafe(32)
        token = cls(id=uuid.uuid4(), family_id=family_id, user_id=user_id,
                    token_hash=hash_refresh_secret(secret), issued_at=now, expires_at=now + ttl)
        return IssuedRefreshToken(token, secret)

    def rotate(self, now: datetime, ttl: timedelta) -> IssuedRefreshToken:
        """Spends this token and returns its successor in the same family.

        Raises ``RefreshTokenReused`` when it was spent before: the caller must then revoke
        the family (``revoked``) for every member, the newest included.
        """
        if self.revoked_at is not None:
            raise RefreshTokenRevoked("this login was revoked; log in again")
        if self.used_at is not None:
            raise RefreshTokenReused(self.family_id)
        if now >= self.expires_at:
            raise RefreshTokenExpired("this refresh token has expired; log in again")
        self.used_at = now
        return self._issue(family_id=self.family_id, user_id=self.user_id, now=now, ttl=ttl)

    def revoked(self, now: datetime) -> RefreshToken:
        return self if self.revoked_at is not None else replace(self, revoked_at=now)
