from __future__ import annotations

from decimal import Decimal

import pytest
from legacy.domain import (
    MAX_QUANTITY,
    Offer,
    Problem,
    charge_key,
    normalise_lines,
    plan_checkout,
    tracking_number,
    valid_email,
    valid_password,
)
from legacy.settings import ConfigError, Settings

OFFERS = {1: Offer(Decimal("1000.00"), True), 2: Offer(Decimal("250.50"), True),
          3: Offer(Decimal("99.00"), False)}


def test_plan_totals_lines_and_takes_stock() -> None:
    plan = plan_checkout({1: 2, 2: 1}, OFFERS, {1: 5, 2: 1})
    assert plan.total == Decimal("2250.50")
    assert plan.stock_after == {1: 3, 2: 0}
    assert plan.lines[1] == (2, Decimal("1000.00"))


def test_plan_refuses_more_than_on_hand_naming_every_short_product() -> None:
    with pytest.raises(Problem) as exc:
        plan_checkout({1: 6, 2: 2}, OFFERS, {1: 5, 2: 1})
    assert exc.value.status == 409
    assert exc.value.extra["product_ids"] == [1, 2]


def test_plan_refuses_inactive_or_unknown_products_before_stock() -> None:
    with pytest.raises(Problem) as exc:
        plan_checkout({3: 1, 9: 1}, OFFERS, {3: 10})
    assert exc.value.status == 422
    assert exc.value.extra["product_ids"] == [3, 9]


def test_lines_merge_per_product_and_are_bounded() -> None:
    assert normalise_lines([(1, 2), (1, 3), (2, 1)]) == {1: 5, 2: 1}
    for bad in ([], [(1, 0)], [(1, MAX_QUANTITY), (1, 1)]):
        with pytest.raises(Problem) as exc:
            normalise_lines(bad)
        assert exc.value.status == 422


def test_charge_key_is_stable_per_customer_and_request() -> None:
    assert charge_key(7, "k1") == charge_key(7, "k1")
    assert charge_key(7, "k1") != charge_key(8, "k1") != charge_key(7, "k2")


def test_tracking_numbers_differ_per_order() -> None:
    assert tracking_number(1) != tracking_number(2)
    assert tracking_number(12).startswith("LG00000012")


def test_email_and_password_shapes() -> None:
    assert valid_email(" a@b.example ") == "a@b.example"
    for bad in ("nope", "a@b", "a b@c.de"):
        with pytest.raises(Problem):
            valid_email(bad)
    with pytest.raises(Problem):
        valid_password("short")


def test_settings_need_a_database_and_numbers() -> None:
    with pytest.raises(ConfigError):
        Settings.from_env({})
    with pytest.raises(ConfigError):
        Settings.from_env({"LEGACY_DATABASE_URL": "postgresql+asyncpg://x/y", "LEGACY_PORT": "x"})
    with pytest.raises(ConfigError):
        Settings.from_env({"LEGACY_DATABASE_URL": "postgresql+asyncpg://x/y",
                           "LEGACY_ARGON2_TIME_COST": "0"})
    s = Settings.from_env({"LEGACY_DATABASE_URL": "postgresql+asyncpg://x/y",
                           "LEGACY_PROVIDER_URL": "http://p:1/"})
    assert s.provider_url == "http://p:1" and s.port == 8000


def test_passwords_verify_only_the_right_one_and_never_an_unknown_account() -> None:
    passwords = Settings(database_url="x", argon2_time_cost=1, argon2_memory_kib=8,
                         argon2_parallelism=1).passwords()
    stored = passwords.hash("right password")
    assert passwords.verify(stored, "right password")
    assert not passwords.verify(stored, "wrong password")
    assert not passwords.verify(None, "not-a-password-of-anyone")
    assert not passwords.verify("not an argon2 hash", "x")
