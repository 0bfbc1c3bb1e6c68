"""The code flow's use cases over in-memory fakes: request checks in RFC 6749's order,
sign-in sharing the password grant's throttle, the exchange and its refusals."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import timedelta
from typing import Any

import pytest
from chassis.errors import Conflict, TooManyRequests, Unprocessable
from identity.domain.model import LoginThrottle
from identity.domain.oauth import digest
from identity.service_layer.errors import InvalidClient, InvalidGrant
from identity.service_layer.handlers import Accounts, Sessions
from identity.service_layer.oauth import (
    AuthorizationRequest,
    Authorizations,
    ClientOutcome,
    Clients,
    NotRedirectable,
    RedirectError,
)
from identity_fakes import Clock, FakeHasher, FakeIssuer, FakeUnitOfWork

PASSWORD = "correct horse battery"
REDIRECT = "http://localhost:8080/auth/callback"
SECRET = "k" * 43


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


@pytest.fixture
def sessions(clock: Clock) -> Sessions:
    return Sessions(FakeHasher(), FakeIssuer(), clock=clock, refresh_ttl=timedelta(days=30),
                    throttle=LoginThrottle(free_failures=3, base_delay=timedelta(seconds=1),
                                           max_delay=timedelta(minutes=15),
                                           forget_after=timedelta(days=1)))


@pytest.fixture
def flow(sessions: Sessions, clock: Clock) -> Authorizations:
    return Authorizations(sessions, clock=clock)


@pytest.fixture
async def ready(uow: FakeUnitOfWork, clock: Clock) -> FakeUnitOfWork:
    await Accounts(FakeHasher(), max_addresses=3, clock=clock).register(
        uow, email="ann@example.com", password=PASSWORD, name="Ann")
    _, outcome = await Clients(clock=clock).register(uow, client_id="storefront",
                                                     redirect_uris=[REDIRECT], secret=SECRET)
    assert outcome is ClientOutcome.CREATED
    return uow


def _query(challenge: str, **changes: Any) -> dict[str, Any]:
    return {"response_type": "code", "client_id": "storefront", "redirect_uri": REDIRECT,
            "state": "s1", "code_challenge": challenge, "code_challenge_method": "S256",
            "scope": None, **changes}


async def _code(flow: Authorizations, uow: FakeUnitOfWork, challenge: str) -> str:
    request = await flow.check(uow, **_query(challenge))
    return await flow.sign_in(uow, request, username="ann@example.com", password=PASSWORD,
                              client_address="198.51.100.1")


async def test_client_and_redirect_errors_come_first_and_are_not_redirectable(
        flow: Authorizations, ready: FakeUnitOfWork) -> None:
    _, challenge = _pkce()
    # Even with every other parameter wrong too: the URI cannot be trusted with an answer.
    for bad in ({"client_id": "nobody"}, {"client_id": None},
                {"redirect_uri": REDIRECT + "x"}, {"redirect_uri": None}):
        with pytest.raises(NotRedirectable):
            await flow.check(ready, **_query(challenge, state=None,
                                             code_challenge_method="plain", **bad))


@pytest.mark.parametrize(("changes", "error"), [
    ({"state": None}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": None}, "invalid_request"),
    ({"code_challenge": "x" * 44}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": None}, "invalid_request"),
    ({"scope": "a  b"}, "invalid_scope"),
])
async def test_other_errors_are_sent_to_the_client(
        flow: Authorizations, ready: FakeUnitOfWork, changes: dict[str, Any],
        error: str) -> None:
    _, challenge = _pkce()
    with pytest.raises(RedirectError) as refused:
        await flow.check(ready, **_query(challenge, **changes))
    assert refused.value.error == error and refused.value.redirect_uri == REDIRECT
    assert refused.value.state == (None if "state" in changes else "s1")


async def test_a_code_is_stored_as_a_digest_and_exchanged_once(
        flow: Authorizations, ready: FakeUnitOfWork) -> None:
    verifier, challenge = _pkce()
    code = await _code(flow, ready, challenge)
    (stored,) = ready.committed.authorization_codes.values()
    assert stored.code_hash == digest(code) and code not in repr(ready.committed)
    pair = await flow.exchange(ready, client_id="storefront", client_secret=SECRET, code=code,
                               redirect_uri=REDIRECT, code_verifier=verifier)
    family = ready.committed.authorization_codes[digest(code)].refresh_family_id
    assert family is not None and pair.refresh_token
    with pytest.raises(InvalidGrant, match="already used"):
        await flow.exchange(ready, client_id="storefront", client_secret=SECRET, code=code,
                            redirect_uri=REDIRECT, code_verifier=verifier)
    assert all(t.revoked_at is not None for t in ready.committed.refresh_tokens.values()
               if t.family_id == family)


async def test_client_authentication(flow: Authorizations, ready: FakeUnitOfWork) -> None:
    verifier, challenge = _pkce()
    code = await _code(flow, ready, challenge)
    for client_id, secret in (("storefront", None), ("storefront", SECRET + "x"),
                              ("nobody", SECRET), ("x" * 65, SECRET)):
        with pytest.raises(InvalidClient):
            await flow.exchange(ready, client_id=client_id, client_secret=secret, code=code,
                                redirect_uri=REDIRECT, code_verifier=verifier)
    assert ready.committed.authorization_codes[digest(code)].used_at is None


async def test_the_form_shares_the_password_grants_throttle(
        flow: Authorizations, sessions: Sessions, ready: FakeUnitOfWork,
        clock: Clock) -> None:
    _, challenge = _pkce()
    request = AuthorizationRequest(client_id="storefront", redirect_uri=REDIRECT, state="s",
                                   code_challenge=challenge, scope="")
    for _ in range(2):
        with pytest.raises(InvalidGrant):
            await flow.sign_in(ready, request, username="ann@example.com", password="nope",
                               client_address="203.0.113.1")
    with pytest.raises(InvalidGrant):
        await sessions.authenticate(ready, username="ann@example.com", password="nope",
                                    client="203.0.113.1")
    with pytest.raises(TooManyRequests):
        await flow.sign_in(ready, request, username="ann@example.com", password=PASSWORD,
                           client_address="203.0.113.1")
    assert not ready.committed.authorization_codes


async def test_registration_is_idempotent_and_refuses_bad_clients(
        ready: FakeUnitOfWork, clock: Clock) -> None:
    clients = Clients(clock=clock)
    again = await clients.register(ready, client_id="storefront", redirect_uris=[REDIRECT],
                                   secret=SECRET)
    assert again[1] is ClientOutcome.UNCHANGED
    with pytest.raises(Conflict):
        await clients.register(ready, client_id="storefront", redirect_uris=[REDIRECT],
                               secret=None, replace=False)
    assert (await clients.register(ready, client_id="storefront", redirect_uris=[REDIRECT],
                                   secret=None))[1] is ClientOutcome.UPDATED
    assert not ready.committed.oauth_clients["storefront"].confidential
    with pytest.raises(Unprocessable):
        await clients.register(ready, client_id="x", redirect_uris=[], secret=None)
