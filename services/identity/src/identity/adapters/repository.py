"""PostgreSQL repositories over one session, and the unit of work that bundles them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Self

from chassis.db import UnitOfWork
from chassis.messaging.outbox import stage
from contracts.identity.v1 import AccountRegistered, AccountUpdated, AddressAdded, AddressUpdated
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from identity.adapters.orm import (
    AddressRow,
    AuthorizationCodeRow,
    LoginFailureRow,
    OAuthClientRow,
    RefreshTokenRow,
    UserRow,
)
from identity.domain.errors import EmailAlreadyRegistered
from identity.domain.model import Address, LoginFailures, RefreshToken, Role, User
from identity.domain.oauth import AuthorizationCode, OAuthClient


def _user(row: UserRow) -> User:
    return User(id=row.id, email=row.email, name=row.name, password_hash=row.password_hash,
                roles=frozenset(Role(r) for r in row.roles), created_at=row.created_at,
                version=row.version)


def _address(row: AddressRow) -> Address:
    return Address(id=row.id, user_id=row.user_id, name=row.name, line1=row.line1,
                   line2=row.line2, city=row.city, postal_code=row.postal_code,
                   country=row.country, phone=row.phone, created_at=row.created_at)


def _refresh_token(row: RefreshTokenRow) -> RefreshToken:
    return RefreshToken(id=row.id, family_id=row.family_id, user_id=row.user_id,
                        token_hash=row.token_hash, issued_at=row.issued_at,
                        expires_at=row.expires_at, used_at=row.used_at,
                        revoked_at=row.revoked_at)


class SqlUserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, user: User) -> None:
        self._session.add(UserRow(
            id=user.id, email=user.email, name=user.name, password_hash=user.password_hash,
            roles=user.role_names, created_at=user.created_at, version=user.version))
        try:
            await self._session.flush()
        except IntegrityError as exc:
            if "users_email_key" in str(exc.orig):
                raise EmailAlreadyRegistered(user.email) from exc
            raise

    async def _one(self, *where: object, for_update: bool) -> User | None:
        stmt = select(UserRow).where(*where)  # type: ignore[arg-type]
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self._session.execute(stmt)).scalar_one_or_none()
        return _user(row) if row is not None else None

    async def get(self, user_id: uuid.UUID, *, for_update: bool = False) -> User | None:
        return await self._one(UserRow.id == user_id, for_update=for_update)

    async def by_email(self, email: str, *, for_update: bool = False) -> User | None:
        return await self._one(UserRow.email == email, for_update=for_update)

    async def save(self, user: User) -> None:
        try:
            user.version = int((await self._session.execute(
                update(UserRow).where(UserRow.id == user.id).values(
                    email=user.email, name=user.name, password_hash=user.password_hash,
                    roles=user.role_names, version=UserRow.version + 1)
                .returning(UserRow.version))).scalar_one())
        except IntegrityError as exc:
            if "users_email_key" in str(exc.orig):
                raise EmailAlreadyRegistered(user.email) from exc
            raise


    async def ids_after(self, after: uuid.UUID | None, limit: int) -> Sequence[uuid.UUID]:
        stmt = select(UserRow.id).order_by(UserRow.id).limit(limit)
        if after is not None:
            stmt = stmt.where(UserRow.id > after)
        return list(await self._session.scalars(stmt))


class SqlAddressRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, address: Address) -> None:
        self._session.add(AddressRow(
            id=address.id, user_id=address.user_id, name=address.name, line1=address.line1,
            line2=address.line2, city=address.city, postal_code=address.postal_code,
            country=address.country, phone=address.phone, created_at=address.created_at))
        await self._session.flush()

    async def replace(self, address: Address) -> None:
        await self._session.execute(
            update(AddressRow).where(AddressRow.id == address.id).values(
                name=address.name, line1=address.line1, line2=address.line2, city=address.city,
                postal_code=address.postal_code, country=address.country, phone=address.phone))

    async def get(self, address_id: uuid.UUID) -> Address | None:
        row = await self._session.get(AddressRow, address_id)
        return _address(row) if row is not None else None

    async def list_for(self, user_id: uuid.UUID) -> Sequence[Address]:
        rows = await self._session.scalars(
            select(AddressRow).where(AddressRow.user_id == user_id)
            .order_by(AddressRow.created_at, AddressRow.id))
        return [_address(r) for r in rows]

    async def count_for(self, user_id: uuid.UUID) -> int:
        count = await self._session.scalar(
            select(func.count()).select_from(AddressRow).where(AddressRow.user_id == user_id))
        return int(count or 0)


class SqlRefreshTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, token: RefreshToken) -> None:
        self._session.add(RefreshTokenRow(
            id=token.id, family_id=token.family_id, user_id=token.user_id,
            token_hash=token.token_hash, issued_at=token.issued_at,
            expires_at=token.expires_at, used_at=token.used_at, revoked_at=token.revoked_at))
        await self._session.flush()

    async def by_hash(self, token_hash: str, *, for_update: bool = False) -> RefreshToken | None:
        stmt = select(RefreshTokenRow).where(RefreshTokenRow.token_hash == token_hash)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self._session.execute(stmt)).scalar_one_or_none()
        return _refresh_token(row) if row is not None else None

    async def save(self, token: RefreshToken) -> None:
        await self._session.execute(
            update(RefreshTokenRow).where(RefreshTokenRow.id == token.id)
            .values(used_at=token.used_at, revoked_at=token.revoked_at))

    async def revoke_family(self, family_id: uuid.UUID, now: datetime) -> int:
        result = await self._session.execute(
            update(RefreshTokenRow)
            .where(RefreshTokenRow.family_id == family_id, RefreshTokenRow.revoked_at.is_(None))
            .values(revoked_at=now))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class SqlLoginFailureRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def lock(self, account_key: str, client: str) -> LoginFailures:
        # Insert-if-absent, then lock: concurrent attempts of one pair queue on the row, so a
        # burst of guesses cannot all pass the check before the first failure is counted.
        await self._session.execute(
            insert(LoginFailureRow).values(account_key=account_key, client=client, failures=0)
            .on_conflict_do_nothing())
        row = (await self._session.execute(
            select(LoginFailureRow).where(LoginFailureRow.account_key == account_key,
                                          LoginFailureRow.client == client)
            .with_for_update())).scalar_one()
        return LoginFailures(account_key=row.account_key, client=row.client,
                             failures=row.failures, last_failure_at=row.last_failure_at,
                             retry_at=row.retry_at)

    async def save(self, record: LoginFailures) -> None:
        await self._session.execute(
            update(LoginFailureRow).where(LoginFailureRow.account_key == record.account_key,
                                          LoginFailureRow.client == record.client)
            .values(failures=record.failures, last_failure_at=record.last_failure_at,
                    retry_at=record.retry_at))

    async def clear(self, account_key: str, client: str) -> None:
        await self._session.execute(
            delete(LoginFailureRow).where(LoginFailureRow.account_key == account_key,
                                          LoginFailureRow.client == client))


def _client(row: OAuthClientRow) -> OAuthClient:
    return OAuthClient(client_id=row.client_id, redirect_uris=tuple(row.redirect_uris),
                       secret_hash=row.secret_hash, created_at=row.created_at)


def _code(row: AuthorizationCodeRow) -> AuthorizationCode:
    return AuthorizationCode(code_hash=row.code_hash, client_id=row.client_id,
                             redirect_uri=row.redirect_uri, user_id=row.user_id,
                             code_challenge=row.code_challenge, scope=row.scope,
                             issued_at=row.issued_at, expires_at=row.expires_at,
                             used_at=row.used_at, refresh_family_id=row.refresh_family_id)


class SqlOAuthClientRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, client_id: str, *, for_update: bool = False) -> OAuthClient | None:
        stmt = select(OAuthClientRow).where(OAuthClientRow.client_id == client_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self._session.execute(stmt)).scalar_one_or_none()
        return _client(row) if row is not None else None

    async def put(self, client: OAuthClient) -> None:
        # Insert or replace the registration; created_at stays the first one's.
        await self._session.execute(
            insert(OAuthClientRow).values(
                client_id=client.client_id, redirect_uris=list(client.redirect_uris),
                secret_hash=client.secret_hash, created_at=client.created_at)
            .on_conflict_do_update(index_elements=[OAuthClientRow.client_id], set_={
                "redirect_uris": list(client.redirect_uris),
                "secret_hash": client.secret_hash}))

    async def list(self) -> Sequence[OAuthClient]:
        rows = await self._session.scalars(
            select(OAuthClientRow).order_by(OAuthClientRow.client_id))
        return [_client(r) for r in rows]


class SqlAuthorizationCodeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, code: AuthorizationCode) -> None:
        self._session.add(AuthorizationCodeRow(
            code_hash=code.code_hash, client_id=code.client_id, redirect_uri=code.redirect_uri,
            user_id=code.user_id, code_challenge=code.code_challenge, scope=code.scope,
            issued_at=code.issued_at, expires_at=code.expires_at, used_at=code.used_at,
            refresh_family_id=code.refresh_family_id))
        await self._session.flush()

    async def by_hash(self, code_hash: str) -> AuthorizationCode | None:
        # Locked: two exchanges of one code race on the row, and the second sees it spent.
        row = (await self._session.execute(
            select(AuthorizationCodeRow).where(AuthorizationCodeRow.code_hash == code_hash)
            .with_for_update())).scalar_one_or_none()
        return _code(row) if row is not None else None

    async def save(self, code: AuthorizationCode) -> None:
        await self._session.execute(
            update(AuthorizationCodeRow).where(AuthorizationCodeRow.code_hash == code.code_hash)
            .values(used_at=code.used_at, refresh_family_id=code.refresh_family_id))


class OutboxEvents:
    """identity's events, staged in the outbox of the change's own transaction. No event
    carries a password hash (ADR 0031)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def account_registered(self, user: User) -> None:
        await stage(self._session, AccountRegistered(
            user_id=str(user.id), email=user.email, name=user.name,
            account_version=user.version), correlation_id=str(user.id))

    async def account_updated(self, user: User) -> None:
        await stage(self._session, AccountUpdated(
            user_id=str(user.id), email=user.email, name=user.name,
            account_version=user.version), correlation_id=str(user.id))

    async def address_added(self, address: Address) -> None:
        await stage(self._session, AddressAdded(
            user_id=str(address.user_id), address_id=str(address.id), country=address.country,
            **_address_fields(address)), correlation_id=str(address.user_id))

    async def address_updated(self, address: Address) -> None:
        await stage(self._session, AddressUpdated(
            user_id=str(address.user_id), address_id=str(address.id), country=address.country,
            **_address_fields(address)), correlation_id=str(address.user_id))


def _address_fields(address: Address) -> dict[str, str | None]:
    # The rest of the address: orders keeps it as a replica for its shipping (ADR 0036).
    return {"name": address.name, "line1": address.line1, "line2": address.line2,
            "city": address.city, "postal_code": address.postal_code, "phone": address.phone}


class SqlIdentityUnitOfWork:
    """The chassis unit of work (one transaction) with identity's repositories on it."""

    users: SqlUserRepository
    addresses: SqlAddressRepository
    refresh_tokens: SqlRefreshTokenRepository
    login_failures: SqlLoginFailureRepository
    oauth_clients: SqlOAuthClientRepository
    authorization_codes: SqlAuthorizationCodeRepository
    events: OutboxEvents

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __aenter__(self) -> Self:
        await self._uow.__aenter__()
        # Identity maps its rows to classes: its repositories take an ORM session, in the
        # unit of work's transaction; its events are staged on the transaction itself.
        orm = await self._uow.orm()
        self.users = SqlUserRepository(orm)
        self.addresses = SqlAddressRepository(orm)
        self.refresh_tokens = SqlRefreshTokenRepository(orm)
        self.login_failures = SqlLoginFailureRepository(orm)
        self.oauth_clients = SqlOAuthClientRepository(orm)
        self.authorization_codes = SqlAuthorizationCodeRepository(orm)
        self.events = OutboxEvents(self._uow.session)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._uow.__aexit__(None, None, None)

    async def commit(self) -> None:
        await self._uow.commit()
