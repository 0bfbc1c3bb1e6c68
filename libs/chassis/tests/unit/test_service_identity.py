"""A service's signed identity on its calls: made by the caller, checked by the callee."""

from __future__ import annotations

import jwt
import pytest
from chassis.registry_keys import new_key_pair
from chassis.service_identity import (
    REUSE_MIN_LEFT_S,
    TOKEN_TTL_S,
    CallerSigner,
    CallerVerifier,
    InvalidCaller,
)

ORDERS, CART, STRANGER = new_key_pair(), new_key_pair(), new_key_pair()
TRUSTED = {"orders": ORDERS[1], "cart": CART[1]}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_names_its_caller_to_the_service_it_is_for() -> None:
    clock = Clock()
    token = CallerSigner("orders", ORDERS[0], clock).token_for("identity")
    assert CallerVerifier("identity", TRUSTED, clock).verify(token) == "orders"
    with pytest.raises(InvalidCaller, match="not for catalog"):
        CallerVerifier("catalog", TRUSTED, clock).verify(token)


@pytest.mark.parametrize("forge", ["other key", "unknown service", "alg none", "garbage",
                                   "renamed caller"])
def test_forged_tokens_are_refused(forge: str) -> None:
    clock = Clock()
    claims = {"iss": "orders", "aud": "identity", "iat": int(clock.now),
              "exp": int(clock.now) + 60}
    from chassis.registry_keys import private_key_of

    token = {
        "other key": lambda: jwt.encode(claims, private_key_of(STRANGER[0]), algorithm="EdDSA"),
        "unknown service": lambda: CallerSigner("payments", STRANGER[0], clock)
        .token_for("identity"),
        "alg none": lambda: jwt.encode(claims, None, algorithm="none"),
        "garbage": lambda: "orders",
        # cart's key, orders' name: the key of the claimed caller is what counts
        "renamed caller": lambda: jwt.encode(claims, private_key_of(CART[0]), algorithm="EdDSA"),
    }[forge]()
    with pytest.raises(InvalidCaller):
        CallerVerifier("identity", TRUSTED, clock).verify(token)


def test_tokens_expire_and_are_reused_only_while_fresh() -> None:
    clock = Clock()
    signer = CallerSigner("orders", ORDERS[0], clock)
    verifier = CallerVerifier("identity", TRUSTED, clock)
    first = signer.token_for("identity")
    clock.now += TOKEN_TTL_S - REUSE_MIN_LEFT_S - 1
    assert signer.token_for("identity") == first  # still fresh: no signature per call
    clock.now += 2
    second = signer.token_for("identity")
    assert second != first and verifier.verify(second) == "orders"
    clock.now += TOKEN_TTL_S + 10
    with pytest.raises(InvalidCaller, match="expired"):
        verifier.verify(second)


def test_a_token_from_the_future_is_refused() -> None:
    clock = Clock()
    token = CallerSigner("orders", ORDERS[0], clock).token_for("identity")
    clock.now -= 120
    with pytest.raises(InvalidCaller):
        CallerVerifier("identity", TRUSTED, clock).verify(token)
