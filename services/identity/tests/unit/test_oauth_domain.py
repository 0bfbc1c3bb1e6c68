"""OAuth 2 rules without I/O: PKCE S256 (RFC 7636), exact redirect URIs, single-use codes
that expire after 60 seconds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from identity.domain.oauth import (
    CODE_TTL,
    AuthorizationCode,
    AuthorizationCodeRejected,
    AuthorizationCodeReused,
    OAuthClient,
    OAuthClientError,
    s256,
    verifier_matches,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
# RFC 7636 Appendix B.
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
REDIRECT = "http://localhost:8080/auth/callback"


def test_s256_matches_rfc7636_appendix_b() -> None:
    assert s256(RFC_VERIFIER) == RFC_CHALLENGE
    assert verifier_matches(RFC_VERIFIER, RFC_CHALLENGE)
    assert not verifier_matches(RFC_VERIFIER[:-1] + "l", RFC_CHALLENGE)


@pytest.mark.parametrize("verifier", ["short", "a" * 129, "é" * 43, "a" * 42 + " "])
def test_verifiers_outside_rfc7636_never_match(verifier: str) -> None:
    assert not verifier_matches(verifier, s256("a" * 43))


def _code(**changes: object) -> AuthorizationCode:
    issued = AuthorizationCode.issue(client_id="storefront", redirect_uri=REDIRECT,
                                     user_id=uuid.uuid4(), code_challenge=RFC_CHALLENGE,
                                     scope="", now=NOW)
    assert issued.code.code_hash != issued.secret and len(issued.secret) >= 43
    return issued.code


GOOD = {"client_id": "storefront", "redirect_uri": REDIRECT,
        "code_verifier": RFC_VERIFIER}


def test_a_code_redeems_once_then_reports_reuse_with_its_family() -> None:
    code = _code()
    code.redeem(**GOOD, now=NOW + timedelta(seconds=59))
    family = uuid.uuid4()
    code.started(family)
    with pytest.raises(AuthorizationCodeReused) as reused:
        code.redeem(**GOOD, now=NOW + timedelta(seconds=1))
    assert reused.value.refresh_family_id == family


@pytest.mark.parametrize(("change", "now"), [
    ({}, NOW + CODE_TTL),
    ({"client_id": "other"}, NOW),
    ({"redirect_uri": REDIRECT + "/"}, NOW),
    ({"code_verifier": "x" * 43}, NOW),
])
def test_a_code_is_refused_when_expired_or_bound_elsewhere(change: dict[str, str],
                                                           now: datetime) -> None:
    code = _code()
    with pytest.raises(AuthorizationCodeRejected) as refused:
        code.redeem(**{**GOOD, **change}, now=now)
    assert not isinstance(refused.value, AuthorizationCodeReused)
    assert code.used_at is None
    code.redeem(**GOOD, now=NOW)  # the refusals did not spend it


def test_redirect_uris_match_exactly() -> None:
    client = OAuthClient.register(client_id="storefront", redirect_uris=[REDIRECT, REDIRECT],
                                  secret="s" * 40, now=NOW)
    assert client.redirect_uris == (REDIRECT,) and client.confidential
    assert client.redirects_to(REDIRECT)
    for near_miss in (REDIRECT + "/", REDIRECT.upper(), REDIRECT + "?a=1",
                      "http://localhost:8080/auth/callback/../callback", REDIRECT[:-1]):
        assert not client.redirects_to(near_miss)
    assert client.secret_matches("s" * 40) and not client.secret_matches("s" * 41)
    assert client.secret_hash != "s" * 40


@pytest.mark.parametrize(("uri", "message"), [
    ("http://shop.example/cb", "https"), ("https://shop.example/cb#frag", "fragment"),
    ("ftp://shop.example/cb", "http or https"), ("/relative", "absolute"),
    ("https://user:pw@shop.example/cb", "credentials"), ("https://a b/cb", "spaces"),
    ("https://shop.example:99999/cb", "valid URI"),
])
def test_redirect_uris_that_could_leak_codes_are_refused(uri: str, message: str) -> None:
    with pytest.raises(OAuthClientError, match=message):
        OAuthClient.register(client_id="c", redirect_uris=[uri], secret=None, now=NOW)


def test_public_clients_have_no_secret_and_secrets_must_be_long() -> None:
    public = OAuthClient.register(client_id="app", redirect_uris=["https://app.example/cb"],
                                  secret=None, now=NOW)
    assert not public.confidential and not public.secret_matches("")
    with pytest.raises(OAuthClientError, match="32"):
        OAuthClient.register(client_id="app", redirect_uris=["https://app.example/cb"],
                             secret="short", now=NOW)
