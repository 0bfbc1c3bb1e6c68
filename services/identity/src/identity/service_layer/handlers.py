"""identity's use cases. Each runs in one unit of work: all of it is written, or none of it,
except where a refusal must itself be remembered (a failed login, a reused refresh token)."""

from __future__ import annotations

import math
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

import structlog
from chassis.clock import utc_now
from chassis.errors import (
    Conflict,
    NotFound,
    PreconditionFailed,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
)

from identity.domain.errors import (
    EmailAlreadyRegistered,
    IdentityError,
    InvalidEmail,
    RefreshTokenRejected,
    RefreshTokenReused,
)
from identity.domain.model import (
    Address,
    LoginThrottle,
    RefreshToken,
    Role,
    User,
    hash_refresh_secret,
    login_account_key,
)
from identity.domain.policy import (
    check_name,
    check_new_password,
    check_password_hash,
    normalise_email,
    normalise_password,
)
from identity.service_layer.errors import InvalidGrant
from identity.service_layer.ports import (
    AccessToken,
    AccessTokenIssuer,
    Clock,
    IdentityUnitOfWork,
    PasswordHasher,
    SigningKeys,
)

if TYPE_CHECKING:  # oauth builds on Sessions, so it imports this module
    from identity.service_layer.oauth import Authorizations, Clients

log = structlog.get_logger("identity")

# One message for every credential failure, so answers do not tell which part was wrong
# (or whether the account exists).
BAD_CREDENTIALS = "the email or password is wrong"


@dataclass(frozen=True, slots=True)
class NewAddress:
    name: str
    line1: str
    line2: str | None
    city: str
    postal_code: str
    country: str
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """An account stated whole by the migration's sync (ADR 0031): the monolith's argon2id
    hash is taken as it is, so its customers keep their passwords."""

    email: str
    name: str
    password_hash: str


@dataclass(frozen=True, slots=True)
class RecordedAccount:
    user: User
    created: bool
    changed: bool


def account_etag(user: User) -> str:
    return f'W/"{user.id.hex}-{user.version}"'


@dataclass(frozen=True, slots=True)
class TokenPair:
    access: AccessToken
    refresh_token: str


class AdminOutcome(StrEnum):
    CREATED = "created"
    PROMOTED = "promoted"
    ALREADY_ADMIN = "already admin"


def _unprocessable(exc: IdentityError) -> Unprocessable:
    return Unprocessable(str(exc), title="Invalid value")


class Accounts:
    """Registration, profile, addresses and admin creation."""

    def __init__(self, hasher: PasswordHasher, *, max_addresses: int,
                 clock: Clock = utc_now) -> None:
        self._hasher = hasher
        self._max_addresses = max_addresses
        self._clock = clock

    async def register(self, uow: IdentityUnitOfWork, *, email: str, password: str, name: str,
                       roles: frozenset[Role] = frozenset({Role.CUSTOMER})) -> User:
        try:
            email = normalise_email(email)
            password = check_new_password(password)
            # Checked before hashing: a bad name must not cost a full argon2 run.
            name = check_name(name)
        except IdentityError as exc:
            raise _unprocessable(exc) from exc
        async with uow:
            # The fast 409 is deliberate: the answer itself says the address has an account,
            # so hashing first would add cost and hide nothing. Not telling needs a sign-up
            # confirmed by mail (docs/security.md); the edge's per-client limit on this route
            # bounds how fast addresses can be probed meanwhile.
            if await uow.users.by_email(email) is not None:
                raise Conflict(f"an account with email {email} exists already")
            user = User.register(email=email, name=name, roles=roles, now=self._clock(),
                                 password_hash=await self._hasher.hash(password))
            try:
                await uow.users.add(user)
            except EmailAlreadyRegistered as exc:  # lost a race with a concurrent register
                raise Conflict(str(exc)) from exc
            await uow.events.account_registered(user)
            await uow.commit()
        log.info("user_registered", user_id=str(user.id), roles=user.role_names)
        return user

    async def record_account(self, uow: IdentityUnitOfWork, user_id: uuid.UUID,
                             record: AccountRecord, *,
                             if_match: str | None = None) -> RecordedAccount:
        """Create or replace an account's email, name and password hash under its id (the
        migration's sync). Idempotent: the record it holds already changes nothing, no
        version and no event, so a sync replaying after a crash applies nothing twice."""
        try:
            email = normalise_email(record.email)
            name = check_name(record.name)
            password_hash = check_password_hash(record.password_hash)
        except IdentityError as exc:
            raise _unprocessable(exc) from exc
        async with uow:
            current = await uow.users.get(user_id, for_update=True)
            if current is None and if_match not in (None, "*"):
                raise PreconditionFailed("no such account: If-Match names no version")
            if current is not None and if_match not in (None, "*", account_etag(current)):
                raise PreconditionFailed("the account changed since you read it; read it "
                                         "again")
            if current is not None and (current.email, current.name,
                                        current.password_hash) == (email, name, password_hash):
                return RecordedAccount(current, created=False, changed=False)
            other = await uow.users.by_email(email)
            if other is not None and other.id != user_id:
                raise Conflict(f"another account has the email {email}")
            try:
                if current is None:
                    user = User(id=user_id, email=email, name=name,
                                password_hash=password_hash, roles=frozenset({Role.CUSTOMER}),
                                created_at=self._clock())
                    await uow.users.add(user)
                    await uow.events.account_registered(user)
                else:
                    user = current
                    user.email, user.name, user.password_hash = email, name, password_hash
                    await uow.users.save(user)
                    await uow.events.account_updated(user)
            except EmailAlreadyRegistered as exc:  # a concurrent register took the email
                raise Conflict(str(exc)) from exc
            await uow.commit()
        log.info("account_recorded", user_id=str(user_id), created=current is None,
                 version=user.version)
        return RecordedAccount(user, created=current is None, changed=True)

    async def rename(self, uow: IdentityUnitOfWork, user_id: uuid.UUID, name: str) -> User:
        try:
            name = check_name(name)
        except IdentityError as exc:
            raise _unprocessable(exc) from exc
        async with uow:
            user = await uow.users.get(user_id, for_update=True)
            if user is None:
                raise Unauthorized("the account behind this token no longer exists")
            if user.name != name:
                user.name = name
                await uow.users.save(user)
                await uow.events.account_updated(user)
                await uow.commit()
        return user

    async def account_ids(self, uow: IdentityUnitOfWork, after: uuid.UUID | None,
                          limit: int) -> Sequence[uuid.UUID]:
        async with uow:
            return await uow.users.ids_after(after, limit)

    async def account_record(self, uow: IdentityUnitOfWork,
                             user_id: uuid.UUID) -> tuple[User, Sequence[Address]]:
        async with uow:
            user = await uow.users.get(user_id)
            if user is None:
                raise NotFound(f"no account {user_id}")
            return user, await uow.addresses.list_for(user_id)

    async def record_address(self, uow: IdentityUnitOfWork, user_id: uuid.UUID,
                             address_id: uuid.UUID, new: NewAddress) -> tuple[Address, bool]:
        """Create or replace one of an account's addresses under its id (the migration's
        sync); the address and whether it was created. The address book's limit is not
        applied: the monolith's books are brought over as they are (ADR 0031)."""
        fresh = self._address(user_id, new)
        async with uow:
            if await uow.users.get(user_id, for_update=True) is None:
                raise NotFound(f"no account {user_id}")
            current = await uow.addresses.get(address_id)
            if current is not None and current.user_id != user_id:
                raise Conflict(f"address {address_id} belongs to another account")
            if current is None:
                address = replace(fresh, id=address_id)
                await uow.addresses.add(address)
                await uow.events.address_added(address)
            else:
                address = replace(fresh, id=address_id, created_at=current.created_at)
                if address == current:
                    return current, False
                await uow.addresses.replace(address)
                await uow.events.address_updated(address)
            await uow.commit()
        return address, current is None

    async def create_admin(self, uow: IdentityUnitOfWork, *, email: str, password: str,
                           name: str | None = None) -> tuple[User, AdminOutcome]:
        """Creates an admin, or grants admin to the existing account with that email (whose
        password is then left as it is: this must not become a password-reset backdoor)."""
        try:
            email = normalise_email(email)
        except InvalidEmail as exc:
            raise _unprocessable(exc) from exc
        async with uow:
            user = await uow.users.by_email(email, for_update=True)
            if user is not None:
                if not user.grant(Role.ADMIN):
                    return user, AdminOutcome.ALREADY_ADMIN
                await uow.users.save(user)
                await uow.commit()
                log.info("admin_granted", user_id=str(user.id))
                return user, AdminOutcome.PROMOTED
        user = await self.register(uow, email=email, password=password,
                                   name=name or email.partition("@")[0],
                                   roles=frozenset({Role.CUSTOMER, Role.ADMIN}))
        return user, AdminOutcome.CREATED

    async def me(self, uow: IdentityUnitOfWork, user_id: uuid.UUID) -> User:
        async with uow:
            user = await uow.users.get(user_id)
        if user is None:
            raise Unauthorized("the account behind this token no longer exists")
        return user

    def _address(self, user_id: uuid.UUID, new: NewAddress) -> Address:
        try:
            return Address.create(user_id=user_id, name=new.name, line1=new.line1,
                                  line2=new.line2, city=new.city, postal_code=new.postal_code,
                                  country=new.country, phone=new.phone, now=self._clock())
        except IdentityError as exc:
            raise _unprocessable(exc) from exc

    async def add_address(self, uow: IdentityUnitOfWork, user_id: uuid.UUID,
                          new: NewAddress) -> Address:
        address = self._address(user_id, new)
        async with uow:
            # Locks the owner row so two concurrent adds cannot both pass the limit.
            if await uow.users.get(user_id, for_update=True) is None:
                raise Unauthorized("the account behind this token no longer exists")
            if await uow.addresses.count_for(user_id) >= self._max_addresses:
                raise Conflict(f"an account keeps at most {self._max_addresses} addresses",
                               title="Address book full")
            await uow.addresses.add(address)
            await uow.events.address_added(address)
            await uow.commit()
        return address

    async def list_addresses(self, uow: IdentityUnitOfWork,
                             user_id: uuid.UUID) -> Sequence[Address]:
        async with uow:
            return await uow.addresses.list_for(user_id)

    async def get_address(self, uow: IdentityUnitOfWork, owner_id: uuid.UUID,
                          address_id: uuid.UUID) -> Address:
        """The address if ``owner_id`` owns it; another owner's address is simply not found,
        so ids cannot be probed for existence."""
        async with uow:
            address = await uow.addresses.get(address_id)
        if address is None or address.user_id != owner_id:
            raise NotFound(f"no address {address_id}")
        return address


class Sessions:
    """Logins (password grant) and refresh-token rotation."""

    def __init__(self, hasher: PasswordHasher, tokens: AccessTokenIssuer, *,
                 throttle: LoginThrottle, refresh_ttl: timedelta, clock: Clock = utc_now,
                 exchanged_ttl: timedelta = timedelta(minutes=5)) -> None:
        self._hasher = hasher
        self._tokens = tokens
        self._exchanged_ttl_s = int(exchanged_ttl.total_seconds())
        self._throttle = throttle
        self._refresh_ttl = refresh_ttl
        self._clock = clock
        self._dummy_hash: str | None = None

    async def _spend_time_like_a_verify(self, password: str) -> None:
        # Unknown accounts still cost one argon2 verify, so response times do not reveal
        # which emails have accounts.
        if self._dummy_hash is None:
            self._dummy_hash = await self._hasher.hash(secrets.token_urlsafe(16))
        await self._hasher.verify(self._dummy_hash, password)

    async def authenticate(self, uow: IdentityUnitOfWork, *, username: str, password: str,
                           client: str) -> TokenPair:
        """The password grant, throttled per (typed account, ``client`` address)."""
        async with uow:
            user = await self.verify_sign_in(uow, username=username, password=password,
                                             client=client)
            pair, _ = await self.start_session(uow, user)
            await uow.commit()
        return pair

    async def verify_sign_in(self, uow: IdentityUnitOfWork, *, username: str, password: str,
                             client: str) -> User:
        """The account ``username`` names if ``password`` is its password, in the open unit
        of work ``uow``; the password grant and the authorization endpoint's sign-in form
        both go through here, so both share one throttle per (account, client) (ADR 0012).

        Every path costs the same work whether the account exists or not: the throttle row
        (keyed by what was typed), one user lookup and one argon2 verify (against a dummy
        hash for an unknown account); a throttled pair gets 429 before any of the rest. A
        failure is committed before ``InvalidGrant`` is raised: it must count.
        """
        password = normalise_password(password)
        account_key = login_account_key(username)
        failures = await uow.login_failures.lock(account_key, client)
        now = self._clock()
        wait = failures.wait_before_next_attempt(now)
        if wait is not None:
            retry_after = max(1, math.ceil(wait.total_seconds()))
            log.warning("login_throttled", failures=failures.failures,
                        retry_after=retry_after, client=client)
            raise TooManyRequests(
                "too many failed sign-ins for this account from this client; "
                "try again later", headers={"Retry-After": str(retry_after)},
                retry_after=retry_after)
        try:
            user = await uow.users.by_email(normalise_email(username))
        except InvalidEmail:
            user = None
        if user is None:
            await self._spend_time_like_a_verify(password)
            verified = False
        else:
            verified = await self._hasher.verify(user.password_hash, password)
        if user is None or not verified:
            failures.record_failure(now, self._throttle)
            await uow.login_failures.save(failures)
            await uow.commit()  # the failure must count although the request fails
            log.info("login_failed", user_id=str(user.id) if user else None,
                     failures=failures.failures, client=client)
            raise InvalidGrant(BAD_CREDENTIALS)
        await uow.login_failures.clear(account_key, client)
        if self._hasher.needs_rehash(user.password_hash):
            # Cost parameters were raised since this hash was made; upgrade it while the
            # plain password is at hand.
            user.password_hash = await self._hasher.hash(password)
            await uow.users.save(user)
            await uow.events.account_updated(user)
        return user

    async def start_session(self, uow: IdentityUnitOfWork,
                            user: User) -> tuple[TokenPair, uuid.UUID]:
        """A new refresh-token family and an access token for ``user``, written in the open
        unit of work (the caller commits); returns the pair and the family's id."""
        now = self._clock()
        issued = RefreshToken.start_family(user.id, now, self._refresh_ttl)
        await uow.refresh_tokens.add(issued.token)
        access = await self._tokens.issue(user, now)
        return TokenPair(access, issued.secret), issued.token.family_id

    async def exchange(self, uow: IdentityUnitOfWork, account_id: uuid.UUID, *,
                       actor: str) -> AccessToken:
        """An access token for ``account_id``, for the service ``actor`` that vouches for
        the person (the migration's ACL, after the monolith checked their session: ADR
        0032). Short-lived, customer only, no refresh token, no session written: nothing to
        revoke, nothing to keep."""
        async with uow:
            user = await uow.users.get(account_id)
        if user is None:
            raise NotFound(f"no account {account_id}")
        token = await self._tokens.issue_exchanged(user, self._clock(), actor=actor,
                                                   ttl_s=self._exchanged_ttl_s)
        log.info("token_exchanged", user_id=str(user.id), actor=actor,
                 expires_in=token.expires_in)
        return token

    async def refresh(self, uow: IdentityUnitOfWork, refresh_token: str) -> TokenPair:
        async with uow:
            current = await uow.refresh_tokens.by_hash(hash_refresh_secret(refresh_token),
                                                       for_update=True)
            if current is None:
                raise InvalidGrant("the refresh token is not valid")
            now = self._clock()
            try:
                issued = current.rotate(now, self._refresh_ttl)
            except RefreshTokenReused:
                revoked = await uow.refresh_tokens.revoke_family(current.family_id, now)
                await uow.commit()  # the revocation must stick although the request fails
                log.warning("refresh_token_reused", user_id=str(current.user_id),
                            family_id=str(current.family_id), revoked=revoked)
                raise InvalidGrant("the refresh token was already used; this login is "
                                   "revoked everywhere, log in again") from None
            except RefreshTokenRejected as exc:
                raise InvalidGrant(str(exc)) from None
            # Roles are read again, so a promotion shows in the next access token.
            user = await uow.users.get(current.user_id)
            if user is None:
                raise InvalidGrant("the account of this refresh token no longer exists")
            await uow.refresh_tokens.save(current)
            await uow.refresh_tokens.add(issued.token)
            access = await self._tokens.issue(user, now)
            await uow.commit()
        return TokenPair(access, issued.secret)


async def rotate_signing_key(keys: SigningKeys) -> str:
    kid = await keys.rotate()
    log.info("signing_key_rotated", kid=kid)
    return kid


@dataclass(frozen=True, slots=True)
class IdentityServices:
    """What ``bootstrap`` wires and the API uses: one instance per process."""

    accounts: Accounts
    sessions: Sessions
    keys: SigningKeys
    authorizations: Authorizations
    clients: Clients
