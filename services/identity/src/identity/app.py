"""Wiring of the identity service: ``create_app`` for the process, ``bootstrap`` for start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from chassis.app import create_service_app
from chassis.auth import KeySource
from chassis.clock import utc_now
from chassis.db import Database
from chassis.messaging.runtime import Messaging, StreamSpec
from chassis.messaging.streams import events_stream_name
from fastapi import FastAPI
from sqlalchemy import delete

from identity.adapters.hashing import Argon2Hasher
from identity.adapters.keys import KeyRing
from identity.adapters.orm import AuthorizationCodeRow, LoginFailureRow, RefreshTokenRow
from identity.adapters.tokens import JwtIssuer
from identity.domain.model import LoginThrottle
from identity.entrypoints.api import jwks_router, router
from identity.entrypoints.deps import IdentityContext, IdentityWiring
from identity.entrypoints.pages import CsrfTokens
from identity.entrypoints.pages import router as authorize_router
from identity.service_layer.handlers import Accounts, IdentityServices, Sessions
from identity.service_layer.oauth import Authorizations, Clients
from identity.settings import IdentitySettings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# identity owns IDENTITY_EVENTS (accounts and addresses, no secrets) and publishes to it
# through its outbox; it consumes nothing.
MESSAGING = Messaging(streams=[StreamSpec(events_stream_name("identity"),
                                          ["identity.events.>"])], outbox=True)
log = structlog.get_logger("identity")


def build_hasher(settings: IdentitySettings) -> Argon2Hasher:
    return Argon2Hasher(time_cost=settings.argon2_time_cost,
                        memory_cost_kib=settings.argon2_memory_cost_kib,
                        parallelism=settings.argon2_parallelism,
                        max_concurrent=settings.argon2_max_concurrent)


def login_throttle(settings: IdentitySettings) -> LoginThrottle:
    return LoginThrottle(
        free_failures=settings.login_free_failures,
        base_delay=timedelta(seconds=settings.login_base_delay_s),
        max_delay=timedelta(seconds=settings.login_max_delay_s),
        forget_after=timedelta(seconds=settings.login_failures_forgotten_after_s))


def build_accounts(settings: IdentitySettings) -> Accounts:
    return Accounts(build_hasher(settings), max_addresses=settings.max_addresses_per_user)


def build_key_ring(db: Database, settings: IdentitySettings) -> KeyRing:
    """The signing key ring as the app and the CLI's token command both use it."""
    return KeyRing(db, publication_grace=timedelta(seconds=settings.key_publication_grace_s),
                   cache_s=settings.signing_key_cache_s,
                   unknown_kid_refetch_s=settings.unknown_kid_refetch_s, clock=utc_now,
                   publish_lead=timedelta(seconds=settings.signing_key_publish_lead_s),
                   secret=(settings.signing_key_secret.get_secret_value().encode()
                           if settings.signing_key_secret is not None else None))


class OwnKeys:
    """identity checks tokens against its own key ring instead of fetching its own JWKS
    over HTTP. The ring exists only once ``bootstrap`` ran; before that nothing verifies."""

    def __init__(self, ctx: IdentityContext) -> None:
        self._ctx = ctx

    async def key_for(self, kid: str) -> Any | None:
        return await self._ctx.wiring.keys.key_for(kid) if self._ctx.wired else None


def _own_keys(ctx: IdentityContext) -> KeySource:
    return OwnKeys(ctx)


def pruner(db: Database, forget_failures_after: timedelta,
           refresh_ttl: timedelta) -> Callable[[], Awaitable[None]]:
    """One pruning round (``chassis.background``). Expired refresh tokens can be exchanged for
    nothing, forgotten sign-in failures count for nothing; dropping them keeps the tables the
    size of the live sessions and of the guessing going on now."""
    async def prune() -> None:
        async with db.sessions() as session, session.begin():
            now = utc_now()
            tokens = await session.execute(delete(RefreshTokenRow).where(
                RefreshTokenRow.expires_at < now - timedelta(days=1)))
            failures = await session.execute(delete(LoginFailureRow).where(
                LoginFailureRow.last_failure_at < now - forget_failures_after))
            # A spent code is kept as long as the tokens issued from it live, so that its
            # replay can still revoke them; an unspent one only until it expired.
            codes = await session.execute(delete(AuthorizationCodeRow).where(
                AuthorizationCodeRow.expires_at < now - refresh_ttl))
        deleted = {"refresh_tokens": int(tokens.rowcount or 0),  # type: ignore[attr-defined]
                   "login_failures": int(failures.rowcount or 0),  # type: ignore[attr-defined]
                   "authorization_codes": int(codes.rowcount or 0)}  # type: ignore[attr-defined]
        if any(deleted.values()):
            log.info("identity_pruned", **deleted)

    return prune


@asynccontextmanager
async def bootstrap(ctx: IdentityContext) -> AsyncIterator[None]:
    settings = ctx.settings
    db = ctx.require_db()
    keys = build_key_ring(db, settings)
    await keys.start()
    hasher = build_hasher(settings)
    sessions = Sessions(
        hasher,
        JwtIssuer(keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience,
                  ttl_s=settings.access_token_ttl_s),
        throttle=login_throttle(settings),
        refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_s),
        exchanged_ttl=timedelta(seconds=settings.exchanged_token_ttl_s))
    ctx.wire(IdentityWiring(
        services=IdentityServices(
            accounts=Accounts(hasher, max_addresses=settings.max_addresses_per_user),
            sessions=sessions, keys=keys, authorizations=Authorizations(sessions),
            clients=Clients()),
        keys=keys,
        csrf=CsrfTokens.from_secret(settings.signing_key_secret.get_secret_value().encode()
                                    if settings.signing_key_secret is not None else None)))
    # The first round one interval after start, as before: not in the start-up rush.
    ctx.background.every(
        "token-pruning", settings.prune_interval_s,
        pruner(db, timedelta(seconds=settings.login_failures_forgotten_after_s),
               timedelta(seconds=settings.refresh_token_ttl_s)),
        first_delay_s=settings.prune_interval_s)
    yield  # the chassis unwires once this ended: OwnKeys then verifies nothing, as before start


def create_app(settings: IdentitySettings | None = None) -> FastAPI:
    return create_service_app(
        settings or IdentitySettings(), routers=[router, authorize_router, jwks_router],
        bootstrap=bootstrap,
        key_source=_own_keys, messaging=MESSAGING,
        description="Accounts, argon2id passwords, RS256 tokens with refresh rotation, "
                    "the JWKS, profiles and addresses; an OAuth 2 authorization server "
                    "(password, refresh_token and authorization_code with PKCE).")
