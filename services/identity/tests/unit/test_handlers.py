"""Use cases over in-memory fakes: registration, logins and throttling, refresh rotation,
addresses and admin creation."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from chassis.errors import Conflict, NotFound, TooManyRequests, Unauthorized, Unprocessable
from identity.domain.model import LoginThrottle, Role
from identity.service_layer.errors import InvalidGrant
from identity.service_layer.handlers import (
    Accounts,
    AdminOutcome,
    NewAddress,
    Sessions,
    TokenPair,
)
from identity_fakes import Clock, FakeHasher, FakeIssuer, FakeUnitOfWork

PASSWORD = "correct horse battery"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


@pytest.fixture
def hasher() -> FakeHasher:
    return FakeHasher()


@pytest.fixture
def issuer() -> FakeIssuer:
    return FakeIssuer()


@pytest.fixture
def accounts(hasher: FakeHasher, clock: Clock) -> Accounts:
    return Accounts(hasher, max_addresses=3, clock=clock)


@pytest.fixture
def sessions(hasher: FakeHasher, issuer: FakeIssuer, clock: Clock) -> Sessions:
    return Sessions(hasher, issuer, clock=clock, refresh_ttl=timedelta(days=30),
                    throttle=LoginThrottle(free_failures=5, base_delay=timedelta(seconds=1),
                                           max_delay=timedelta(minutes=15),
                                           forget_after=timedelta(days=1)))


async def _register(accounts: Accounts, uow: FakeUnitOfWork, email: str = "Ann@Example.com",
                    name: str = "Ann") -> uuid.UUID:
    return (await accounts.register(uow, email=email, password=PASSWORD, name=name)).id


OWNER, ATTACKER = "198.51.100.1", "203.0.113.66"


async def _login(sessions: Sessions, uow: FakeUnitOfWork, password: str = PASSWORD,
                 username: str = "ann@example.com", client: str = OWNER) -> TokenPair:
    return await sessions.authenticate(uow, username=username, password=password,
                                       client=client)


async def test_register_normalises_and_hashes(accounts: Accounts, uow: FakeUnitOfWork,
                                              hasher: FakeHasher) -> None:
    user_id = await _register(accounts, uow)
    stored = uow.committed.users[user_id]
    assert stored.email == "ann@example.com"
    assert stored.password_hash == f"hashed:{PASSWORD}"
    assert stored.roles == {Role.CUSTOMER}


async def test_register_refuses_a_taken_email_whatever_its_case(
        accounts: Accounts, uow: FakeUnitOfWork) -> None:
    await _register(accounts, uow)
    with pytest.raises(Conflict):
        await _register(accounts, uow, email="ANN@example.COM")
    assert len(uow.committed.users) == 1


async def test_register_refuses_bad_input_before_hashing(accounts: Accounts, uow: FakeUnitOfWork,
                                                         hasher: FakeHasher) -> None:
    for email, password, name in (("nope", PASSWORD, "Ann"), ("a@example.com", "short", "Ann"),
                                  ("a@example.com", PASSWORD, "\n")):
        with pytest.raises(Unprocessable):
            await accounts.register(uow, email=email, password=password, name=name)
    assert hasher.hashed == [] and uow.commits == 0


async def test_login_issues_an_access_token_and_starts_a_refresh_family(
        accounts: Accounts, sessions: Sessions, uow: FakeUnitOfWork,
        issuer: FakeIssuer) -> None:
    user_id = await _register(accounts, uow)
    pair = await _login(sessions, uow, username="  ANN@example.com ")
    assert pair.access.token == "access-1" and pair.refresh_token
    assert issuer.issued == [(user_id, ["customer"])]
    (token,) = uow.committed.refresh_tokens.values()
    assert token.user_id == user_id and token.used_at is None


async def test_wrong_password_and_unknown_account_get_the_same_answer(
        accounts: Accounts, sessions: Sessions, uow: FakeUnitOfWork,
        hasher: FakeHasher) -> None:
    await _register(accounts, uow)
    with pytest.raises(InvalidGrant) as wrong:
        await _login(sessions, uow, password="not the password")
    before = hasher.verified
    with pytest.raises(InvalidGrant) as unknown:
        await _login(sessions, uow, username="nobody@example.com")
    with pytest.raises(InvalidGrant):
        await _login(sessions, uow, username="not-an-email")
    assert wrong.value.detail == unknown.value.detail
    assert wrong.value.extra["error"] == "invalid_grant"
    # Unknown accounts still pay for a verify, so timing does not tell them apart.
    assert hasher.verified == before + 2


async def test_an_attacker_is_delayed_more_and_more_while_the_owner_signs_in(
        accounts: Accounts, sessions: Sessions, uow: FakeUnitOfWork, clock: Clock) -> None:
    await _register(accounts, uow)
    for _ in range(5):
        with pytest.raises(InvalidGrant):
            await _login(sessions, uow, password="guess guess", client=ATTACKER)
    # The attacker's next attempt waits, even with the right password ...
    with pytest.raises(TooManyRequests) as caught:
        await _login(sessions, uow, client=ATTACKER)
    assert caught.value.headers == {"Retry-After": "1"}
    # ... while the owner, from their own client, is not delayed at all: no lockout.
    assert (await _login(sessions, uow, client=OWNER)).access.token
    clock.advance(seconds=1)
    with pytest.raises(InvalidGrant):
        await _login(sessions, uow, password="guess again", client=ATTACKER)
    with pytest.raises(TooManyRequests) as caught:
        await _login(sessions, uow, client=ATTACKER)
    assert caught.value.headers == {"Retry-After": "2"}  # growing
    clock.advance(seconds=2)
    # The pair's success clears its failures.
    assert (await _login(sessions, uow, client=ATTACKER)).access.token
    assert uow.committed.login_failures == {}


async def test_unknown_and_known_accounts_are_throttled_alike(
        accounts: Accounts, sessions: Sessions, uow: FakeUnitOfWork,
        hasher: FakeHasher) -> None:
    await _register(accounts, uow)

    async def answers(username: str) -> tuple[list[object], int]:
        seen: list[object] = []
        before = hasher.verified
        for _ in range(7):
            try:
                await _login(sessions, uow, username=username, password="guess guess",
                             client=ATTACKER)
            except (InvalidGrant, TooManyRequests) as exc:
                seen.append((type(exc).__name__, exc.status, exc.detail, exc.headers))
        return seen, hasher.verified - before

    known, known_verifies = await answers("ann@example.com")
    unknown, unknown_verifies = await answers("nobody@example.com")
    assert known == unknown
    assert [a[1] for a in known] == [400] * 5 + [429] * 2  # type: ignore[index]
    # One argon2 verify per checked attempt either way (a dummy hash for nobody), and none
    # for a throttled one: the time taken does not tell the accounts apart either.
    assert known_verifies == unknown_verifies == 5


async def test_throttling_is_per_account(accounts: Accounts, sessions: Sessions,
                                         uow: FakeUnitOfWork) -> None:
    await _register(accounts, uow)
    await _register(accounts, uow, email="bob@example.com", name="Bob")
    for _ in range(5):
        with pytest.raises(InvalidGrant):
            await _login(sessions, uow, password="guess guess")
    assert (await _login(sessions, uow, username="bob@example.com")).access.token


async def test_login_rehashes_a_password_hashed_with_old_parameters(
        accounts: Accounts, sessions: Sessions, uow: FakeUnitOfWork,
        hasher: FakeHasher) -> None:
    user_id = await _register(accounts, uow)
    hasher.outdated.add(f"hashed:{PASSWORD}")
    await _login(sessions, uow)
    assert hasher.hashed.count(PASSWORD) == 2
    assert uow.committed.users[user_id].password_hash == f"hashed:{PASSWORD}"


async def test_refresh_rotates_and_reads_roles_again(
        accounts: Accounts, sessions: Sessions, uow: FakeUnitOfWork,
        issuer: FakeIssuer) -> None:
    await _register(accounts, uow)
    first = await _login(sessions, uow)
    await accounts.create_admin(uow, email="ann@example.com", password="ignored")
    second = await sessions.refresh(uow, first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert issuer.issued[-1][1] == ["admin", "customer"]
    third = await sessions.refresh(uow, second.refresh_token)
    assert third.access.token == "access-3"
    families = {t.family_id for t in uow.committed.refresh_tokens.values()}
    assert len(families) == 1 and len(uow.committed.refresh_tokens) == 3


async def test_reuse_of_a_spent_refresh_token_revokes_the_whole_family(
        accounts: Accounts, sessions: Sessions, uow: FakeUnitOfWork) -> None:
    await _register(accounts, uow)
    other_login = await _login(sessions, uow)
    first = await _login(sessions, uow)
    second = await sessions.refresh(uow, first.refresh_token)
    with pytest.raises(InvalidGrant) as caught:
        await sessions.refresh(uow, first.refresh_token)
    assert "already used" in str(caught.value.detail)
    # The newest member dies too: the thief might be the one holding it.
    with pytest.raises(InvalidGrant):
        await sessions.refresh(uow, second.refresh_token)
    # Another login (another family) is untouched.
    assert (await sessions.refresh(uow, other_login.refresh_token)).access.token


async def test_unknown_and_expired_refresh_tokens_are_invalid_grants(
        accounts: Accounts, sessions: Sessions, uow: FakeUnitOfWork, clock: Clock) -> None:
    await _register(accounts, uow)
    with pytest.raises(InvalidGrant):
        await sessions.refresh(uow, "made-up")
    pair = await _login(sessions, uow)
    clock.advance(days=30)
    with pytest.raises(InvalidGrant) as caught:
        await sessions.refresh(uow, pair.refresh_token)
    assert "expired" in str(caught.value.detail)


async def test_addresses_belong_to_their_owner(accounts: Accounts,
                                               uow: FakeUnitOfWork) -> None:
    ann = await _register(accounts, uow)
    bob = await _register(accounts, uow, email="bob@example.com", name="Bob")
    new = NewAddress(name="Ann", line1="1 Main St", line2=None, city="Seoul",
                     postal_code="04524", country="kr")
    address = await accounts.add_address(uow, ann, new)
    assert address.country == "KR" and address.user_id == ann
    assert [a.id for a in await accounts.list_addresses(uow, ann)] == [address.id]
    assert await accounts.list_addresses(uow, bob) == []
    assert (await accounts.get_address(uow, ann, address.id)).id == address.id
    with pytest.raises(NotFound):
        await accounts.get_address(uow, bob, address.id)
    with pytest.raises(NotFound):
        await accounts.get_address(uow, ann, uuid.uuid4())


async def test_address_book_is_bounded_and_validated(accounts: Accounts,
                                                     uow: FakeUnitOfWork) -> None:
    ann = await _register(accounts, uow)
    new = NewAddress(name="Ann", line1="1 Main St", line2=None, city="Seoul",
                     postal_code="04524", country="KR")
    for _ in range(3):
        await accounts.add_address(uow, ann, new)
    with pytest.raises(Conflict):
        await accounts.add_address(uow, ann, new)
    with pytest.raises(Unprocessable):
        await accounts.add_address(uow, ann, NewAddress(
            name="Ann", line1="x", line2=None, city="Seoul", postal_code="1", country="ZZ"))
    with pytest.raises(Unauthorized):  # a valid token for an account deleted since
        await accounts.add_address(uow, uuid.uuid4(), new)
    assert len(uow.committed.addresses) == 3


async def test_create_admin_creates_promotes_and_is_idempotent(
        accounts: Accounts, uow: FakeUnitOfWork) -> None:
    admin, outcome = await accounts.create_admin(uow, email="Root@Example.com",
                                                 password=PASSWORD)
    assert outcome is AdminOutcome.CREATED
    assert admin.roles == {Role.CUSTOMER, Role.ADMIN} and admin.name == "root"
    _, outcome = await accounts.create_admin(uow, email="root@example.com", password="x")
    assert outcome is AdminOutcome.ALREADY_ADMIN
    ann = await _register(accounts, uow)
    promoted, outcome = await accounts.create_admin(uow, email="ann@example.com",
                                                    password="another password")
    assert outcome is AdminOutcome.PROMOTED and promoted.id == ann
    # Promotion leaves the password alone: it must not double as a password reset.
    assert uow.committed.users[ann].password_hash == f"hashed:{PASSWORD}"
    assert uow.committed.users[ann].is_admin


async def test_create_admin_refuses_bad_input(accounts: Accounts, uow: FakeUnitOfWork) -> None:
    with pytest.raises(Unprocessable):
        await accounts.create_admin(uow, email="root", password=PASSWORD)
    with pytest.raises(Unprocessable):
        await accounts.create_admin(uow, email="root@example.com", password="short")
    assert uow.committed.users == {}


async def test_me_of_a_deleted_account_is_unauthorized(accounts: Accounts,
                                                       uow: FakeUnitOfWork) -> None:
    with pytest.raises(Unauthorized):
        await accounts.me(uow, uuid.uuid4())
