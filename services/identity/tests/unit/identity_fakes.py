"""In-memory adapters for the service layer's ports."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Self

from identity.domain.errors import EmailAlreadyRegistered
from identity.domain.model import Address, LoginFailures, RefreshToken, User
from identity.domain.oauth import AuthorizationCode, OAuthClient
from identity.service_layer.ports import AccessToken


@dataclass
class Store:
    users: dict[uuid.UUID, User] = field(default_factory=dict)
    addresses: dict[uuid.UUID, Address] = field(default_factory=dict)
    refresh_tokens: dict[uuid.UUID, RefreshToken] = field(default_factory=dict)
    login_failures: dict[tuple[str, str], LoginFailures] = field(default_factory=dict)
    oauth_clients: dict[str, OAuthClient] = field(default_factory=dict)
    authorization_codes: dict[str, AuthorizationCode] = field(default_factory=dict)
    events: list[tuple[str, str, int | None]] = field(default_factory=list)


class FakeUsers:
    def __init__(self, store: Store) -> None:
        self._s = store

    async def add(self, user: User) -> None:
        if any(u.email == user.email for u in self._s.users.values()):
            raise EmailAlreadyRegistered(user.email)
        self._s.users[user.id] = copy.copy(user)

    async def get(self, user_id: uuid.UUID, *, for_update: bool = False) -> User | None:
        user = self._s.users.get(user_id)
        return copy.copy(user) if user else None

    async def by_email(self, email: str, *, for_update: bool = False) -> User | None:
        found = next((u for u in self._s.users.values() if u.email == email), None)
        return copy.copy(found) if found else None

    async def save(self, user: User) -> None:
        user.version += 1
        self._s.users[user.id] = copy.copy(user)

    async def ids_after(self, after: uuid.UUID | None, limit: int) -> Sequence[uuid.UUID]:
        return sorted(i for i in self._s.users if after is None or i > after)[:limit]


class FakeAddresses:
    def __init__(self, store: Store) -> None:
        self._s = store

    async def add(self, address: Address) -> None:
        self._s.addresses[address.id] = address

    async def replace(self, address: Address) -> None:
        self._s.addresses[address.id] = address

    async def get(self, address_id: uuid.UUID) -> Address | None:
        return self._s.addresses.get(address_id)

    async def list_for(self, user_id: uuid.UUID) -> Sequence[Address]:
        return sorted((a for a in self._s.addresses.values() if a.user_id == user_id),
                      key=lambda a: a.created_at)

    async def count_for(self, user_id: uuid.UUID) -> int:
        return len(await self.list_for(user_id))


class FakeRefreshTokens:
    def __init__(self, store: Store) -> None:
        self._s = store

    async def add(self, token: RefreshToken) -> None:
        self._s.refresh_tokens[token.id] = copy.copy(token)

    async def by_hash(self, token_hash: str, *, for_update: bool = False) -> RefreshToken | None:
        found = next((t for t in self._s.refresh_tokens.values()
                      if t.token_hash == token_hash), None)
        return copy.copy(found) if found else None

    async def save(self, token: RefreshToken) -> None:
        self._s.refresh_tokens[token.id] = copy.copy(token)

    async def revoke_family(self, family_id: uuid.UUID, now: datetime) -> int:
        members = [t for t in self._s.refresh_tokens.values()
                   if t.family_id == family_id and t.revoked_at is None]
        for token in members:
            self._s.refresh_tokens[token.id] = token.revoked(now)
        return len(members)


class FakeLoginFailures:
    def __init__(self, store: Store) -> None:
        self._s = store

    async def lock(self, account_key: str, client: str) -> LoginFailures:
        found = self._s.login_failures.get((account_key, client))
        return copy.copy(found) if found else LoginFailures(account_key, client)

    async def save(self, record: LoginFailures) -> None:
        self._s.login_failures[(record.account_key, record.client)] = copy.copy(record)

    async def clear(self, account_key: str, client: str) -> None:
        self._s.login_failures.pop((account_key, client), None)


class FakeOAuthClients:
    def __init__(self, store: Store) -> None:
        self._s = store

    async def get(self, client_id: str, *, for_update: bool = False) -> OAuthClient | None:
        found = self._s.oauth_clients.get(client_id)
        return copy.copy(found) if found else None

    async def put(self, client: OAuthClient) -> None:
        existing = self._s.oauth_clients.get(client.client_id)
        kept = copy.copy(client)
        if existing is not None:
            kept.created_at = existing.created_at
        self._s.oauth_clients[client.client_id] = kept

    async def list(self) -> Sequence[OAuthClient]:
        return [copy.copy(c) for _, c in sorted(self._s.oauth_clients.items())]


class FakeAuthorizationCodes:
    def __init__(self, store: Store) -> None:
        self._s = store

    async def add(self, code: AuthorizationCode) -> None:
        self._s.authorization_codes[code.code_hash] = copy.copy(code)

    async def by_hash(self, code_hash: str) -> AuthorizationCode | None:
        found = self._s.authorization_codes.get(code_hash)
        return copy.copy(found) if found else None

    async def save(self, code: AuthorizationCode) -> None:
        self._s.authorization_codes[code.code_hash] = copy.copy(code)


class FakeEvents:
    """The events staged in the unit of work, kept in its store (so a rollback drops them)."""

    def __init__(self, store: Store) -> None:
        self._s = store

    async def account_registered(self, user: User) -> None:
        self._s.events.append(("AccountRegistered", str(user.id), user.version))

    async def account_updated(self, user: User) -> None:
        self._s.events.append(("AccountUpdated", str(user.id), user.version))

    async def address_added(self, address: Address) -> None:
        self._s.events.append(("AddressAdded", str(address.id), None))

    async def address_updated(self, address: Address) -> None:
        self._s.events.append(("AddressUpdated", str(address.id), None))


class FakeUnitOfWork:
    """Changes go to a copy of the store and replace it only on commit, like a transaction."""

    def __init__(self) -> None:
        self.committed = Store()
        self.commits = 0

    async def __aenter__(self) -> Self:
        self._work = copy.deepcopy(self.committed)
        self.users = FakeUsers(self._work)
        self.addresses = FakeAddresses(self._work)
        self.refresh_tokens = FakeRefreshTokens(self._work)
        self.login_failures = FakeLoginFailures(self._work)
        self.oauth_clients = FakeOAuthClients(self._work)
        self.authorization_codes = FakeAuthorizationCodes(self._work)
        self.events = FakeEvents(self._work)
        return self

    async def __aexit__(self, *exc: object) -> None:
        del self._work

    async def commit(self) -> None:
        self.committed = copy.deepcopy(self._work)
        self.commits += 1


class FakeHasher:
    def __init__(self) -> None:
        self.hashed: list[str] = []
        self.verified = 0
        self.outdated: set[str] = set()

    async def hash(self, password: str) -> str:
        self.hashed.append(password)
        return f"hashed:{password}"

    async def verify(self, password_hash: str, password: str) -> bool:
        self.verified += 1
        return password_hash == f"hashed:{password}"

    def needs_rehash(self, password_hash: str) -> bool:
        return password_hash in self.outdated


class FakeIssuer:
    def __init__(self) -> None:
        self.issued: list[tuple[uuid.UUID, list[str]]] = []

    async def issue(self, user: User, now: datetime) -> AccessToken:
        self.issued.append((user.id, user.role_names))
        return AccessToken(token=f"access-{len(self.issued)}", expires_in=900, kid="k1")

    async def issue_exchanged(self, user: User, now: datetime, *, actor: str,
                              ttl_s: int) -> AccessToken:
        self.issued.append((user.id, ["customer"]))
        return AccessToken(token=f"exchanged-{len(self.issued)}-{actor}", expires_in=ttl_s,
                           kid="k1")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
