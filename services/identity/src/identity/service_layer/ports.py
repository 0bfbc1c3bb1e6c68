"""What the use cases need from the outside world; adapters implement these."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, Self

from identity.domain.model import Address, LoginFailures, RefreshToken, User
from identity.domain.oauth import AuthorizationCode, OAuthClient

Clock = Callable[[], datetime]


class UserRepository(Protocol):
    async def add(self, user: User) -> None:
        """Raises ``EmailAlreadyRegistered`` when the email is taken."""

    async def get(self, user_id: uuid.UUID, *, for_update: bool = False) -> User | None: ...

    async def by_email(self, email: str, *, for_update: bool = False) -> User | None: ...

    async def save(self, user: User) -> None:
        """Writes the user's fields and advances ``user.version``."""

    async def ids_after(self, after: uuid.UUID | None, limit: int) -> Sequence[uuid.UUID]:
        """Account ids greater than ``after``, in order, at most ``limit``."""
        ...


class AddressRepository(Protocol):
    async def add(self, address: Address) -> None: ...

    async def replace(self, address: Address) -> None:
        """Writes the address's fields over the stored one with its id."""

    async def get(self, address_id: uuid.UUID) -> Address | None: ...

    async def list_for(self, user_id: uuid.UUID) -> Sequence[Address]: ...

    async def count_for(self, user_id: uuid.UUID) -> int: ...


class IdentityEvents(Protocol):
    """The events a change publishes, staged in its transaction (the outbox)."""

    async def account_registered(self, user: User) -> None: ...

    async def account_updated(self, user: User) -> None: ...

    async def address_added(self, address: Address) -> None: ...

    async def address_updated(self, address: Address) -> None: ...


class RefreshTokenRepository(Protocol):
    async def add(self, token: RefreshToken) -> None: ...

    async def by_hash(self, token_hash: str, *, for_update: bool = False) -> RefreshToken | None:
        ...

    async def save(self, token: RefreshToken) -> None: ...

    async def revoke_family(self, family_id: uuid.UUID, now: datetime) -> int:
        """Revokes every member of the family not revoked yet; returns how many."""
        ...


class LoginFailureRepository(Protocol):
    async def lock(self, account_key: str, client: str) -> LoginFailures:
        """The pair's failures (none yet: a fresh record), locked until the transaction ends,
        so concurrent attempts of one pair are judged one after another."""
        ...

    async def save(self, record: LoginFailures) -> None: ...

    async def clear(self, account_key: str, client: str) -> None: ...


class OAuthClientRepository(Protocol):
    async def get(self, client_id: str, *, for_update: bool = False) -> OAuthClient | None: ...

    async def put(self, client: OAuthClient) -> None:
        """Adds the client, or replaces the registration with that client id."""
        ...

    async def list(self) -> Sequence[OAuthClient]: ...


class AuthorizationCodeRepository(Protocol):
    async def add(self, code: AuthorizationCode) -> None: ...

    async def by_hash(self, code_hash: str) -> AuthorizationCode | None:
        """The code, locked until the transaction ends (two redemptions queue)."""
        ...

    async def save(self, code: AuthorizationCode) -> None: ...


class IdentityUnitOfWork(Protocol):
    """One transaction over identity's repositories; leaving without commit rolls back."""

    @property
    def users(self) -> UserRepository: ...

    @property
    def addresses(self) -> AddressRepository: ...

    @property
    def refresh_tokens(self) -> RefreshTokenRepository: ...

    @property
    def events(self) -> IdentityEvents: ...

    @property
    def login_failures(self) -> LoginFailureRepository: ...

    @property
    def oauth_clients(self) -> OAuthClientRepository: ...

    @property
    def authorization_codes(self) -> AuthorizationCodeRepository: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def commit(self) -> None: ...


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool: ...

    def needs_rehash(self, password_hash: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    expires_in: int
    kid: str


class AccessTokenIssuer(Protocol):
    async def issue(self, user: User, now: datetime) -> AccessToken: ...

    async def issue_exchanged(self, user: User, now: datetime, *, actor: str,
                              ttl_s: int) -> AccessToken:
        """A customer-only access token for ``user``, obtained by the service ``actor``
        (RFC 8693's ``act`` claim), living ``ttl_s`` seconds."""
        ...


class SigningKeys(Protocol):
    async def rotate(self) -> str:
        """Makes a new key the active one and returns its kid."""
        ...

    async def jwks(self) -> dict[str, Any]: ...
