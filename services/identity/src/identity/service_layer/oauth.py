"""The authorization code flow with PKCE: checking an authorization request, signing in on
the authorization endpoint, exchanging a code for tokens, and registering clients."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import structlog
from chassis.clock import utc_now
from chassis.errors import Conflict, Unprocessable

from identity.domain.oauth import (
    MAX_SCOPE,
    S256_CHALLENGE,
    SCOPE,
    AuthorizationCode,
    AuthorizationCodeRejected,
    AuthorizationCodeReused,
    OAuthClient,
    OAuthClientError,
    digest,
)
from identity.service_layer.errors import InvalidClient, InvalidGrant
from identity.service_layer.handlers import Sessions, TokenPair
from identity.service_layer.ports import Clock, IdentityUnitOfWork

log = structlog.get_logger("identity.oauth")

# RFC 6749 Appendix A.5: state is VSCHAR (printable ASCII); bounded so it cannot bloat URLs.
_STATE = re.compile(r"[\x20-\x7e]{1,500}")
MAX_CODE = 100


class NotRedirectable(Exception):
    """An authorization request whose client or redirect URI cannot be trusted: the error
    is shown to the person, never sent to the URI (RFC 6749 §4.1.2.1, no open redirector)."""


class RedirectError(Exception):
    """An error for the client, sent to its (registered, checked) redirect URI."""

    def __init__(self, error: str, description: str, *, redirect_uri: str,
                 state: str | None) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.redirect_uri = redirect_uri
        self.state = state


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A checked request: the client exists, the redirect URI is one of its own."""

    client_id: str
    redirect_uri: str
    state: str
    code_challenge: str
    scope: str


class ClientOutcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


class Authorizations:
    def __init__(self, sessions: Sessions, *, clock: Clock = utc_now) -> None:
        self._sessions = sessions
        self._clock = clock

    async def check(self, uow: IdentityUnitOfWork, *, response_type: str | None,
                    client_id: str | None, redirect_uri: str | None, state: str | None,
                    code_challenge: str | None, code_challenge_method: str | None,
                    scope: str | None) -> AuthorizationRequest:
        """The request, checked in RFC 6749's order: client and redirect URI first (their
        errors raise ``NotRedirectable``), then the rest (``RedirectError``)."""
        if not client_id:
            raise NotRedirectable("the request names no client (client_id is missing)")
        async with uow:
            client = await uow.oauth_clients.get(client_id) if len(client_id) <= 64 else None
        if client is None:
            raise NotRedirectable("the request names a client that is not registered")
        if not redirect_uri:
            raise NotRedirectable("the request has no redirect_uri")
        if not client.redirects_to(redirect_uri):
            raise NotRedirectable("redirect_uri is not one this client registered")
        valid_state = state if state and _STATE.fullmatch(state) else None

        def refuse(error: str, description: str) -> RedirectError:
            return RedirectError(error, description, redirect_uri=redirect_uri,
                                 state=valid_state)

        if not response_type:
            raise refuse("invalid_request", "response_type is required")
        if response_type != "code":
            raise refuse("unsupported_response_type", "only response_type=code is supported")
        if not state:
            raise refuse("invalid_request", "state is required: the client must check it "
                                            "when the answer comes back")
        if valid_state is None:
            raise refuse("invalid_request", "state has at most 500 printable ASCII characters")
        # PKCE for every client: a confidential one gains the binding of code to session too.
        if not code_challenge_method:
            raise refuse("invalid_request", "PKCE is required: code_challenge_method=S256")
        if code_challenge_method != "S256":
            raise refuse("invalid_request", "only code_challenge_method=S256 is supported "
                                            "(plain sends the verifier in the clear)")
        if not code_challenge or not S256_CHALLENGE.fullmatch(code_challenge):
            raise refuse("invalid_request", "code_challenge must be BASE64URL(SHA256("
                                            "code_verifier)): 43 characters")
        scope = scope or ""
        if scope and (len(scope) > MAX_SCOPE or not SCOPE.fullmatch(scope)):
            raise refuse("invalid_scope", "scope is space-separated tokens of printable "
                                          f"ASCII, at most {MAX_SCOPE} characters")
        return AuthorizationRequest(client_id=client.client_id, redirect_uri=redirect_uri,
                                    state=state, code_challenge=code_challenge, scope=scope)

    async def sign_in(self, uow: IdentityUnitOfWork, request: AuthorizationRequest, *,
                      username: str, password: str, client_address: str) -> str:
        """Signs the person in (throttled like the password grant) and returns a new
        authorization code for ``request``. Raises ``InvalidGrant`` for wrong credentials
        and ``TooManyRequests`` for a throttled (account, address) pair."""
        async with uow:
            user = await self._sessions.verify_sign_in(
                uow, username=username, password=password, client=client_address)
            issued = AuthorizationCode.issue(
                client_id=request.client_id, redirect_uri=request.redirect_uri,
                user_id=user.id, code_challenge=request.code_challenge, scope=request.scope,
                now=self._clock())
            await uow.authorization_codes.add(issued.code)
            await uow.commit()
        log.info("authorization_code_issued", client_id=request.client_id,
                 user_id=str(user.id))
        return issued.secret

    async def exchange(self, uow: IdentityUnitOfWork, *, client_id: str,
                       client_secret: str | None, code: str, redirect_uri: str,
                       code_verifier: str) -> TokenPair:
        """The authorization_code grant: the client proves itself (its secret, when it is
        confidential), then the code is spent, bound checks and all, for a token pair."""
        async with uow:
            client = await uow.oauth_clients.get(client_id) if len(client_id) <= 64 else None
            if client is None:
                raise InvalidClient("unknown client or wrong client secret")
            if client.confidential:
                if client_secret is None or not client.secret_matches(client_secret):
                    raise InvalidClient("unknown client or wrong client secret")
            elif client_secret is not None:
                raise InvalidClient("this client is public: it has no secret to send")
            found = await uow.authorization_codes.by_hash(digest(code)) \
                if len(code) <= MAX_CODE else None
            if found is None:
                raise InvalidGrant("the authorization code is not valid")
            now = self._clock()
            try:
                found.redeem(client_id=client.client_id, redirect_uri=redirect_uri,
                             code_verifier=code_verifier, now=now)
            except AuthorizationCodeReused as exc:
                revoked = 0
                if exc.refresh_family_id is not None:
                    revoked = await uow.refresh_tokens.revoke_family(exc.refresh_family_id,
                                                                     now)
                await uow.commit()  # the revocation must stick although the request fails
                log.warning("authorization_code_reused", client_id=client.client_id,
                            user_id=str(found.user_id), revoked=revoked)
                raise InvalidGrant("the authorization code was already used; the tokens "
                                   "issued from it are revoked") from None
            except AuthorizationCodeRejected as exc:
                raise InvalidGrant(str(exc)) from None
            user = await uow.users.get(found.user_id)
            if user is None:
                raise InvalidGrant("the account of this code no longer exists")
            pair, family_id = await self._sessions.start_session(uow, user)
            found.started(family_id)
            await uow.authorization_codes.save(found)
            await uow.commit()
        return pair


class Clients:
    """Registration of OAuth 2 clients (the admin API, ``python -m identity
    register-client``)."""

    def __init__(self, *, clock: Clock = utc_now) -> None:
        self._clock = clock

    async def register(self, uow: IdentityUnitOfWork, *, client_id: str,
                       redirect_uris: Sequence[str], secret: str | None,
                       replace: bool = True) -> tuple[OAuthClient, ClientOutcome]:
        """Registers a client, or (``replace``) sets an existing one's redirect URIs and
        secret to these; a public client is one without a secret."""
        try:
            client = OAuthClient.register(client_id=client_id, redirect_uris=list(redirect_uris),
                                          secret=secret, now=self._clock())
        except OAuthClientError as exc:
            raise Unprocessable(str(exc), title="Invalid client registration") from exc
        async with uow:
            existing = await uow.oauth_clients.get(client.client_id, for_update=True)
            if existing is not None and existing.same_registration(client):
                return existing, ClientOutcome.UNCHANGED
            if existing is not None and not replace:
                raise Conflict(f"a client {client.client_id!r} is registered already")
            await uow.oauth_clients.put(client)
            await uow.commit()
        outcome = ClientOutcome.CREATED if existing is None else ClientOutcome.UPDATED
        log.info("oauth_client_registered", client_id=client.client_id, outcome=outcome.value,
                 confidential=client.confidential, redirect_uris=list(client.redirect_uris))
        return client, outcome

    async def list(self, uow: IdentityUnitOfWork) -> Sequence[OAuthClient]:
        async with uow:
            return await uow.oauth_clients.list()
