"""Domain rules: emails, passwords, names, roles, login throttling, refresh families."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from identity.domain.errors import (
    InvalidAddress,
    InvalidEmail,
    InvalidName,
    InvalidPassword,
    RefreshTokenExpired,
    RefreshTokenReused,
    RefreshTokenRevoked,
)
from identity.domain.model import (
    Address,
    LoginFailures,
    LoginThrottle,
    RefreshToken,
    Role,
    User,
    hash_refresh_secret,
    login_account_key,
)
from identity.domain.policy import check_name, check_new_password, normalise_email

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
THROTTLE = LoginThrottle(free_failures=5, base_delay=timedelta(seconds=1),
                         max_delay=timedelta(minutes=15), forget_after=timedelta(days=1))


@pytest.mark.parametrize(("raw", "expected"), [
    ("Ann@Example.COM", "ann@example.com"),
    ("  bob.smith+shop@mail.example.co.kr \n", "bob.smith+shop@mail.example.co.kr"),
    ("o'neil@xn--bcher-kva.example", "o'neil@xn--bcher-kva.example"),
])
def test_email_is_trimmed_and_lower_cased(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize("raw", [
    "", "   ", "ann", "ann@", "@example.com", "ann@example", "ann@@example.com",
    "ann@exa mple.com", "an n@example.com", ".ann@example.com", "ann.@example.com",
    "a..b@example.com", "ann@-example.com", "ann@example.c", "ann@example.123",
    '"ann"@example.com', "ann@[127.0.0.1]", "a" * 65 + "@example.com",
    "a@" + "b" * 250 + ".com", "ann@example.com\r\nBcc: x@example.com",
])
def test_invalid_emails_are_refused(raw: str) -> None:
    with pytest.raises(InvalidEmail):
        normalise_email(raw)


def test_password_policy_bounds() -> None:
    assert check_new_password("x" * 8) == "x" * 8
    assert check_new_password("y" * 128) == "y" * 128
    for bad in ("", "short", "x" * 7, "z" * 129, " " * 12, "abc\x00defgh"):
        with pytest.raises(InvalidPassword):
            check_new_password(bad)


def test_passwords_are_nfkc_normalised_so_both_spellings_match() -> None:
    composed, decomposed = "caf\u00e9 au lait", "cafe\u0301 au lait"
    assert check_new_password(composed) == check_new_password(decomposed)
    # Any printable character is allowed, spaces and non-Latin scripts included.
    assert check_new_password("비밀번호 정말 길다") == "비밀번호 정말 길다"


def test_names_are_trimmed_and_single_line() -> None:
    assert check_name("  Ann Lee ") == "Ann Lee"
    for bad in ("", "   ", "a" * 201, "Ann\nLee", "Ann\u202eeeL"):
        with pytest.raises(InvalidName):
            check_name(bad)


def _user(**kw: object) -> User:
    values: dict[str, object] = {"email": "Ann@Example.com", "name": "Ann",
                                 "password_hash": "h", "now": NOW, **kw}
    return User.register(**values)  # type: ignore[arg-type]


def test_every_user_is_a_customer_and_admin_comes_on_top() -> None:
    user = _user()
    assert user.email == "ann@example.com"
    assert user.roles == {Role.CUSTOMER} and not user.is_admin
    admin = _user(roles=frozenset({Role.ADMIN}))
    assert admin.roles == {Role.CUSTOMER, Role.ADMIN}
    assert admin.role_names == ["admin", "customer"]
    assert user.grant(Role.ADMIN) is True and user.is_admin
    assert user.grant(Role.ADMIN) is False


def test_failures_past_the_free_ones_make_the_pair_wait_longer_each_time() -> None:
    pair = LoginFailures(login_account_key("ann@example.com"), "192.0.2.7")
    for i in range(4):
        pair.record_failure(NOW + timedelta(minutes=i), THROTTLE)
        assert pair.wait_before_next_attempt(NOW + timedelta(minutes=i)) is None
    waits = []
    now = NOW + timedelta(minutes=10)
    for _ in range(13):
        pair.record_failure(now, THROTTLE)
        wait = pair.wait_before_next_attempt(now)
        assert wait is not None
        waits.append(int(wait.total_seconds()))
        now += wait  # the attacker waits exactly as long as told, then guesses again
        assert pair.wait_before_next_attempt(now) is None
    # 1 s, 2 s, 4 s ... and never more than the cap: a delay, not a lock.
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900]


def test_failures_are_forgotten_a_while_after_the_last_one() -> None:
    pair = LoginFailures("k", "192.0.2.7")
    for _ in range(7):
        pair.record_failure(NOW, THROTTLE)
    pair.record_failure(NOW + timedelta(days=1, seconds=1), THROTTLE)
    assert pair.failures == 1 and pair.retry_at is None


def test_the_account_key_is_a_digest_of_what_was_typed_known_or_not() -> None:
    assert login_account_key(" Ann@Example.com ") == login_account_key("ann@example.com")
    assert login_account_key("ann@example.com") != login_account_key("bob@example.com")
    assert "ann" not in login_account_key("ann@example.com")
    assert len(login_account_key("not an email at all")) == 64


def test_refresh_token_stores_only_a_digest_of_its_secret() -> None:
    issued = RefreshToken.start_family(uuid.uuid4(), NOW, timedelta(days=30))
    assert issued.token.token_hash == hash_refresh_secret(issued.secret)
    assert issued.secret not in repr(issued)
    assert len(issued.secret) >= 43  # 256 bits of randomness
    assert issued.token.expires_at == NOW + timedelta(days=30)


def test_rotation_spends_the_token_and_keeps_the_family() -> None:
    first = RefreshToken.start_family(uuid.uuid4(), NOW, timedelta(days=30)).token
    later = NOW + timedelta(hours=1)
    second = first.rotate(later, timedelta(days=30))
    assert first.used_at == later
    assert second.token.family_id == first.family_id
    assert second.token.user_id == first.user_id
    assert second.token.id != first.id and second.secret
    assert second.token.expires_at == later + timedelta(days=30)


def test_reusing_a_spent_token_is_detected_as_reuse_of_its_family() -> None:
    first = RefreshToken.start_family(uuid.uuid4(), NOW, timedelta(days=30)).token
    first.rotate(NOW, timedelta(days=30))
    with pytest.raises(RefreshTokenReused) as caught:
        first.rotate(NOW + timedelta(seconds=1), timedelta(days=30))
    assert caught.value.family_id == first.family_id


def test_revoked_and_expired_tokens_cannot_rotate() -> None:
    token = RefreshToken.start_family(uuid.uuid4(), NOW, timedelta(days=1)).token
    with pytest.raises(RefreshTokenExpired):
        token.rotate(NOW + timedelta(days=1), timedelta(days=1))
    revoked = token.revoked(NOW)
    assert revoked.revoked_at == NOW and token.revoked_at is None
    assert revoked.revoked(NOW + timedelta(hours=1)).revoked_at == NOW
    with pytest.raises(RefreshTokenRevoked):
        revoked.rotate(NOW, timedelta(days=1))


def _address(**kw: object) -> Address:
    values: dict[str, object] = {
        "user_id": uuid.uuid4(), "name": "Ann Lee", "line1": "1 Main St", "line2": None,
        "city": "Seoul", "postal_code": "04524", "country": "kr", "phone": None, "now": NOW,
        **kw}
    return Address.create(**values)  # type: ignore[arg-type]


def test_address_is_cleaned() -> None:
    address = _address(line2="  ", postal_code=" sw1a 1aa ", phone="+82 10-1234-5678")
    assert address.country == "KR"
    assert address.line2 is None
    assert address.postal_code == "SW1A 1AA"
    assert address.phone == "+82 10-1234-5678"


@pytest.mark.parametrize("bad", [
    {"country": "XX"}, {"country": "KOR"}, {"country": "k1"}, {"postal_code": "!!"},
    {"postal_code": ""}, {"phone": "call me"}, {"phone": "12"}, {"name": " "},
    {"line1": "x" * 201}, {"city": "Seoul\nBusan"},
])
def test_invalid_addresses_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidAddress):
        _address(**bad)
