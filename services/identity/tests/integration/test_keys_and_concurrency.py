"""The key ring and the row locks against a real PostgreSQL: rotation across instances,
retirement after the grace period, and races that must not slip past the rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from chassis.auth import TokenVerifier
from chassis.db import Database
from chassis.errors import TooManyRequests
from identity.adapters.hashing import Argon2Hasher
from identity.adapters.keys import KeyRing, SigningKeySecretError
from identity.adapters.repository import SqlIdentityUnitOfWork
from identity.adapters.tokens import JwtIssuer
from identity.domain.model import LoginThrottle
from identity.service_layer.errors import InvalidGrant
from identity.service_layer.handlers import Accounts, Sessions
from sqlalchemy import text

pytestmark = pytest.mark.integration

GRACE = timedelta(minutes=16)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=4)
    yield database
    await database.dispose()


def ring(db: Database, clock: Clock, cache_s: float = 0.0) -> KeyRing:
    return KeyRing(db, publication_grace=GRACE, cache_s=cache_s, unknown_kid_refetch_s=0.0,
                   clock=clock)


async def test_first_start_creates_one_key_even_when_instances_race(db: Database) -> None:
    clock = Clock()
    rings = [ring(db, clock) for _ in range(3)]
    await asyncio.gather(*(r.start() for r in rings))
    kids = {(await r.active_key()).kid for r in rings}
    assert len(kids) == 1
    assert [k["kid"] for k in (await rings[0].jwks())["keys"]] == list(kids)


async def test_rotation_on_one_instance_reaches_the_others(db: Database) -> None:
    clock = Clock()
    first, second = ring(db, clock), ring(db, clock, cache_s=3600)
    await first.start()
    await second.start()
    old = (await second.active_key()).kid
    new = await first.rotate()
    issuer = JwtIssuer(first, issuer="mercato-identity", audience="mercato", ttl_s=900)
    accounts = Accounts(Argon2Hasher(time_cost=1, memory_cost_kib=8, parallelism=1),
                        max_addresses=5)
    user = await accounts.register(SqlIdentityUnitOfWork(db.unit_of_work()),
                                   email="ann@example.com", password="correct horse",
                                   name="Ann")
    token = (await issuer.issue(user, clock())).token
    # The second instance has never seen the new kid: it re-reads the table for it.
    verifier = TokenVerifier(second, issuer="mercato-identity", audience="mercato")
    assert (await verifier.verify(token)).subject == str(user.id)
    assert {k["kid"] for k in (await second.jwks())["keys"]} == {old, new}


async def test_retired_keys_leave_the_jwks_after_the_grace_period(db: Database) -> None:
    clock = Clock()
    keys = ring(db, clock)
    await keys.start()
    old = (await keys.active_key()).kid
    middle = await keys.rotate()
    assert await keys.key_for(old) is not None
    clock.now += GRACE + timedelta(seconds=1)
    assert [k["kid"] for k in (await keys.jwks())["keys"]] == [middle]
    assert await keys.key_for(old) is None
    newest = await keys.rotate()  # also deletes keys past their grace, private halves too
    assert [k["kid"] for k in (await keys.jwks())["keys"]] == [newest, middle]
    async with db.sessions() as session:
        stored = (await session.scalars(text("SELECT kid FROM signing_keys"))).all()
    assert set(stored) == {middle, newest}


async def test_a_rotated_key_is_published_before_it_signs(db: Database) -> None:
    """The edge caches the JWKS and never refetches for an unknown kid: a new key must be
    in the JWKS for the whole lead before any token carries it."""
    clock = Clock()
    keys = KeyRing(db, publication_grace=GRACE, cache_s=0.0, unknown_kid_refetch_s=0.0,
                   clock=clock, publish_lead=timedelta(seconds=35))
    await keys.start()
    old = (await keys.active_key()).kid  # the very first key signs at once: nothing to wait for
    new = await keys.rotate()
    assert {k["kid"] for k in (await keys.jwks())["keys"]} == {old, new}
    assert (await keys.active_key()).kid == old
    clock.now += timedelta(seconds=34)
    assert (await keys.active_key()).kid == old
    clock.now += timedelta(seconds=2)
    assert (await keys.active_key()).kid == new


async def _sessions(db: Database, keys: KeyRing) -> Sessions:
    return Sessions(Argon2Hasher(time_cost=1, memory_cost_kib=8, parallelism=1),
                    JwtIssuer(keys, issuer="mercato-identity", audience="mercato", ttl_s=900),
                    throttle=LoginThrottle(free_failures=5, base_delay=timedelta(seconds=60),
                                           max_delay=timedelta(minutes=15),
                                           forget_after=timedelta(days=1)),
                    refresh_ttl=timedelta(days=30))


async def test_concurrent_exchanges_of_one_refresh_token_let_one_win_and_revoke_the_family(
        db: Database) -> None:
    keys = ring(db, Clock())
    await keys.start()
    accounts = Accounts(Argon2Hasher(time_cost=1, memory_cost_kib=8, parallelism=1),
                        max_addresses=5)
    await accounts.register(SqlIdentityUnitOfWork(db.unit_of_work()), email="ann@example.com",
                            password="correct horse", name="Ann")
    sessions = await _sessions(db, keys)
    pair = await sessions.authenticate(SqlIdentityUnitOfWork(db.unit_of_work()),
                                       username="ann@example.com", password="correct horse",
                                       client="192.0.2.1")
    results = await asyncio.gather(
        *(sessions.refresh(SqlIdentityUnitOfWork(db.unit_of_work()), pair.refresh_token)
          for _ in range(4)), return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, InvalidGrant) for r in results if r not in winners)
    # The losers' reuse revoked the family, the winner's new token with it.
    with pytest.raises(InvalidGrant):
        await sessions.refresh(SqlIdentityUnitOfWork(db.unit_of_work()),
                               winners[0].refresh_token)  # type: ignore[union-attr]


async def test_a_burst_of_guesses_cannot_exceed_the_throttle(db: Database) -> None:
    keys = ring(db, Clock())
    await keys.start()
    accounts = Accounts(Argon2Hasher(time_cost=1, memory_cost_kib=8, parallelism=1),
                        max_addresses=5)
    await accounts.register(SqlIdentityUnitOfWork(db.unit_of_work()), email="ann@example.com",
                            password="correct horse", name="Ann")
    sessions = await _sessions(db, keys)
    results = await asyncio.gather(
        *(sessions.authenticate(SqlIdentityUnitOfWork(db.unit_of_work()),
                                username=username, password=f"guess {i}", client="192.0.2.1")
          for i in range(12) for username in ("ann@example.com", "nobody@example.com")),
        return_exceptions=True)
    # Per (account, client) pair, known or unknown account alike: five checked guesses, and
    # the rest wait their delay (the row lock judges them one after another).
    assert sum(isinstance(r, InvalidGrant) for r in results) == 2 * 5
    assert sum(isinstance(r, TooManyRequests) for r in results) == 2 * 7


async def stored_pems(db: Database) -> dict[str, str]:
    async with db.sessions() as session:
        rows = (await session.execute(text("SELECT kid, private_pem FROM signing_keys"))).all()
    return {kid: pem for kid, pem in rows}


async def test_private_keys_are_stored_encrypted_and_clear_ones_encrypted_at_start(
        db: Database) -> None:
    clock = Clock()
    secret = b"a long random secret from the vault"
    clear = ring(db, clock)
    await clear.start()  # an install from before the secret: its key is stored in the clear
    kid = (await clear.active_key()).kid
    assert (await stored_pems(db))[kid].startswith("-----BEGIN PRIVATE KEY-----")

    keys = KeyRing(db, publication_grace=GRACE, cache_s=0.0, unknown_kid_refetch_s=0.0,
                   clock=clock, secret=secret)
    await keys.start()
    new = await keys.rotate()
    pems = await stored_pems(db)
    assert set(pems) == {kid, new}
    assert all(pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----") for pem in pems.values())
    assert all("BEGIN PRIVATE KEY" not in pem for pem in pems.values())
    # Still the same keys: a token the old key signed verifies, the new key signs.
    issuer = JwtIssuer(keys, issuer="mercato-identity", audience="mercato", ttl_s=900)
    user = await Accounts(Argon2Hasher(time_cost=1, memory_cost_kib=8, parallelism=1),
                          max_addresses=5).register(SqlIdentityUnitOfWork(db.unit_of_work()),
                                                    email="eve@example.com",
                                                    password="correct horse", name="Eve")
    token = (await issuer.issue(user, clock())).token
    verifier = TokenVerifier(keys, issuer="mercato-identity", audience="mercato")
    assert (await verifier.verify(token)).subject == str(user.id)

    for wrong, says in ((None, "is stored encrypted"), (b"another secret", "cannot be decrypted")):
        with pytest.raises(SigningKeySecretError, match=says):
            await KeyRing(db, publication_grace=GRACE, cache_s=0.0, unknown_kid_refetch_s=0.0,
                          clock=clock, secret=wrong).start()
