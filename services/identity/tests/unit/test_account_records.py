"""The migration sync's account records over in-memory fakes (ADR 0031): stated whole,
idempotent, versioned, with the monolith's argon2id hashes and nothing else."""

from __future__ import annotations

import uuid

import pytest
from chassis.errors import Conflict, NotFound, PreconditionFailed, Unprocessable
from identity.domain.errors import InvalidPasswordHash
from identity.domain.policy import check_password_hash
from identity.service_layer.handlers import AccountRecord, Accounts, NewAddress, account_etag
from identity_fakes import Clock, FakeHasher, FakeUnitOfWork

HASH = "$argon2id$v=19$m=65536,t=3,p=4$XPMbXX2ZgU/bGDpqD2h8QQ$bkbC2lcR9RZJCaZTeyiyhz9OB2N/LIQBm6aw/7dHJfk"
USER = uuid.UUID("6c656761-0003-8000-8000-000000000001")


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


@pytest.fixture
def accounts() -> Accounts:
    return Accounts(FakeHasher(), max_addresses=1, clock=Clock())


def record(**changes: str) -> AccountRecord:
    return AccountRecord(**{"email": "Kim@Shop.test", "name": "Kim", "password_hash": HASH,
                            **changes})


@pytest.mark.parametrize("value", [
    HASH.replace("argon2id", "argon2i"), "$2b$12$" + "a" * 53, "", HASH + "\n",
    "$argon2id$v=16$m=65536,t=3,p=4$XPMbXX2ZgU/bGDpqD2h8QQ$bkbC2lcR9RZJCaZTeyiyhz9OB2N",
    "$argon2id$v=19$m=0,t=3,p=4$XPMbXX2ZgU/bGDpqD2h8QQ$bkbC2lcR9RZJCaZTeyiyhz9OB2N/LIQ"])
def test_only_argon2id_phc_strings_are_hashes(value: str) -> None:
    with pytest.raises(InvalidPasswordHash):
        check_password_hash(value)


def test_any_argon2id_cost_is_a_hash() -> None:
    assert check_password_hash(HASH) == HASH
    cheap = "$argon2id$v=19$m=8,t=1,p=1$w7CIW4elft7+gmkvyjOTZw$GSskJX5bu0Ix86Tv0j5axywkxmbaSHpAevwz8Eanj/Y"
    assert check_password_hash(cheap) == cheap


async def test_a_record_is_created_then_repeated_without_a_change(
        accounts: Accounts, uow: FakeUnitOfWork) -> None:
    made = await accounts.record_account(uow, USER, record())
    assert (made.created, made.changed, made.user.email, made.user.version) == (
        True, True, "kim@shop.test", 1)
    again = await accounts.record_account(uow, USER, record(email="kim@shop.test"),
                                          if_match=account_etag(made.user))
    assert (again.created, again.changed, again.user.version) == (False, False, 1)
    assert uow.commits == 1
    assert [e[0] for e in uow.committed.events] == ["AccountRegistered"]
    renamed = await accounts.record_account(uow, USER, record(name="Kim Minji"))
    assert renamed.changed and renamed.user.version == 2
    assert [e[0] for e in uow.committed.events] == ["AccountRegistered", "AccountUpdated"]


async def test_a_stale_version_a_taken_email_and_bad_input_are_refused(
        accounts: Accounts, uow: FakeUnitOfWork) -> None:
    made = await accounts.record_account(uow, USER, record())
    await accounts.record_account(uow, USER, record(name="Kim Minji"))
    with pytest.raises(PreconditionFailed):
        await accounts.record_account(uow, USER, record(name="Other"),
                                      if_match=account_etag(made.user))
    with pytest.raises(PreconditionFailed):  # no such account to match
        await accounts.record_account(uow, uuid.uuid4(), record(email="x@shop.test"),
                                      if_match='W/"x-1"')
    with pytest.raises(Conflict):
        await accounts.record_account(uow, uuid.uuid4(), record())
    for bad in (record(password_hash="plain"), record(email="nope"), record(name=" ")):
        with pytest.raises(Unprocessable):
            await accounts.record_account(uow, uuid.uuid4(), bad)
    assert len(uow.committed.users) == 1


async def test_addresses_are_stated_past_the_books_limit(accounts: Accounts,
                                                         uow: FakeUnitOfWork) -> None:
    new = NewAddress(name="Kim", line1="1 Road", line2=None, city="Seoul",
                     postal_code="04524", country="kr")
    with pytest.raises(NotFound):
        await accounts.record_address(uow, USER, uuid.uuid4(), new)
    await accounts.record_account(uow, USER, record())
    first, second = uuid.uuid4(), uuid.uuid4()
    assert (await accounts.record_address(uow, USER, first, new))[1] is True
    assert (await accounts.record_address(uow, USER, second, new))[1] is True  # limit is 1
    again, created = await accounts.record_address(uow, USER, second, new)
    assert created is False and again.country == "KR"
    assert [e[0] for e in uow.committed.events].count("AddressAdded") == 2
