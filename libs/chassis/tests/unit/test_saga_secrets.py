"""Redacting a saga's secret keys: by key wherever they appear, by value wherever quoted."""

from __future__ import annotations

import pytest
from chassis.saga import REDACTED
from chassis.saga.secrets import Redactor, SecretLeakPrevented

DATA = {"order_id": "o-1", "card": "4242424242424242", "pin": "12", "token": None}


def test_keys_are_redacted_at_any_depth_and_values_wherever_quoted() -> None:
    r = Redactor(["card", "pin", "token"], DATA)
    seen = r.value({"data": DATA, "events": [{"card": "x"}, "paid with 4242424242424242"]})
    assert seen == {"data": {"order_id": "o-1", "card": REDACTED, "pin": REDACTED,
                             "token": REDACTED},
                    "events": [{"card": REDACTED}, f"paid with {REDACTED}"]}
    assert DATA["card"] == "4242424242424242"  # copied, not changed in place
    assert r.omit(DATA) == {"order_id": "o-1"}


def test_short_values_are_redacted_by_key_only() -> None:
    # "12" would blot out every 12 in ordinary text.
    assert Redactor(["pin"], DATA).text("order 12 of 120") == "order 12 of 120"


def test_no_secret_keys_changes_nothing() -> None:
    value = {"card": "4242424242424242"}
    assert Redactor([], DATA).value(value) is value


def test_an_error_quoting_a_secret_is_raised_again_without_it() -> None:
    r = Redactor(["card"], DATA)
    with pytest.raises(SecretLeakPrevented) as caught, r.scrubbing():
        raise KeyError(f"no issuer for {DATA['card']}")
    assert DATA["card"] not in str(caught.value)
    assert str(caught.value) == f"KeyError: 'no issuer for {REDACTED}'"
    assert caught.value.__suppress_context__  # the original message is not printed with it


def test_an_error_without_secrets_passes_unchanged() -> None:
    original = ValueError("just broken")
    with pytest.raises(ValueError) as caught, Redactor(["card"], DATA).scrubbing():
        raise original
    assert caught.value is original
