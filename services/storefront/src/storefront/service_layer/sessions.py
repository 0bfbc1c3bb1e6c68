"""Who is browsing: a cookie names the browser; a signed-in browser has a session row that
keeps the customer's tokens on the server (the browser never sees a token).

* The cookie's value is random (32 bytes); the row is keyed by its sha256, so the table
  alone signs no one in. Signing in or out issues a new cookie (no session fixation).
* CSRF: every form carries HMAC(secret, cookie); a POST whose token does not match is
  refused. Anonymous browsers need no row for that (sign-in and sign-up forms).
* Signing in is identity's authorization code flow with PKCE (ADR 0022): ``begin_sign_in``
  keeps a fresh verifier and a random ``state`` in a row of the browser's cookie and sends
  the browser to identity's page with the S256 challenge; ``finish_sign_in`` takes that row
  back once, if the callback's ``state`` is the row's, and exchanges the code. The verifier
  never leaves the server, so a code that leaks (history, logs, Referer) is worth nothing.
* The access token is refreshed shortly before it expires, under a row lock: identity
  revokes the whole family when a rotated refresh token is used twice, so two requests
  of one browser must not both refresh.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from chassis.db import UnitOfWork

from storefront.adapters.identity import (
    IdentityClient,
    SignInRefused,
    Tokens,
    authorize_url,
    new_verifier,
)
from storefront.adapters.repository import SessionRows, SignInRows

log = structlog.get_logger("storefront.sessions")

COOKIE = "sf_sid"
REFRESH_BEFORE_S = 30
# last_seen_at is written at most this often per session (not on every page).
TOUCH_EVERY = timedelta(minutes=5)
# A person has this long on identity's page before the sign-in must start again.
SIGN_IN_WITHIN = timedelta(minutes=15)


@dataclass(frozen=True)
class Customer:
    id: str
    email: str
    name: str
    roles: frozenset[str]
    access_token: str

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


@dataclass
class Visitor:
    cookie: str
    csrf: str
    fresh_cookie: bool  # the response must set it
    customer: Customer | None = None


def hash_cookie(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Sessions:
    def __init__(self, uow: Callable[[], UnitOfWork], identity: IdentityClient, *,
                 secret: bytes, idle: timedelta,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._uow = uow
        self._identity = identity
        self._secret = secret
        self._idle = idle
        self._now = clock

    def csrf_for(self, cookie: str) -> str:
        return hmac.new(self._secret, cookie.encode(), hashlib.sha256).hexdigest()[:40]

    def csrf_ok(self, visitor: Visitor, token: str | None) -> bool:
        # A browser without our cookie cannot have one of our forms.
        return (not visitor.fresh_cookie and bool(token)
                and hmac.compare_digest(visitor.csrf, token or ""))

    def new_visitor(self) -> Visitor:
        cookie = secrets.token_urlsafe(32)
        return Visitor(cookie=cookie, csrf=self.csrf_for(cookie), fresh_cookie=True)

    async def visitor(self, cookie: str | None) -> Visitor:
        if not cookie or len(cookie) > 100:
            return self.new_visitor()
        visitor = Visitor(cookie=cookie, csrf=self.csrf_for(cookie), fresh_cookie=False)
        visitor.customer = await self._customer(hash_cookie(cookie))
        return visitor

    async def _customer(self, id_hash: str) -> Customer | None:
        now = self._now()
        async with self._uow() as uow:
            rows = SessionRows(uow.session)
            row = await rows.get(id_hash)
            if row is None:
                return None
            if row["last_seen_at"] < now - self._idle:
                await rows.delete(id_hash)
                await uow.commit()
                return None
            if row["access_expires_at"] - now > timedelta(seconds=REFRESH_BEFORE_S):
                if row["last_seen_at"] < now - TOUCH_EVERY:
                    await rows.update(id_hash, last_seen_at=now)
                    await uow.commit()
                return _customer_of(row)
        return await self._refreshed(id_hash)

    async def _refreshed(self, id_hash: str) -> Customer | None:
        now = self._now()
        async with self._uow() as uow:
            rows = SessionRows(uow.session)
            row = await rows.get(id_hash, for_update=True)
            if row is None:
                return None
            if row["access_expires_at"] - now > timedelta(seconds=REFRESH_BEFORE_S):
                return _customer_of(row)  # another request refreshed it while we waited
            try:
                tokens = await self._identity.refresh(row["refresh_token"])
            except SignInRefused:
                log.info("session_refresh_refused")
                await rows.delete(id_hash)
                await uow.commit()
                return None
            await rows.update(id_hash, access_token=tokens.access_token,
                              refresh_token=tokens.refresh_token,
                              access_expires_at=_at(tokens), last_seen_at=now)
            await uow.commit()
            row.update(access_token=tokens.access_token)
            return _customer_of(row)

    async def begin_sign_in(self, visitor: Visitor, *, redirect_uri: str,
                            next_url: str) -> str:
        """Where to send the browser (identity's sign-in page). The visitor's cookie, new
        or not, keys the sign-in: the response must set it when it is fresh."""
        verifier, state, now = new_verifier(), secrets.token_urlsafe(32), self._now()
        async with self._uow() as uow:
            rows = SignInRows(uow.session)
            await rows.delete_older_than(now - SIGN_IN_WITHIN)
            await rows.put(id_hash=hash_cookie(visitor.cookie), state=state,
                           code_verifier=verifier, redirect_uri=redirect_uri,
                           next_url=next_url, created_at=now)
            await uow.commit()
        return authorize_url(client_id=self._identity.client_id, redirect_uri=redirect_uri,
                             state=state, verifier=verifier)

    async def finish_sign_in(self, visitor: Visitor, *, code: str,
                             state: str) -> tuple[Visitor, str]:
        """The signed-in visitor (a new cookie) and where they were going. Raises
        ``SignInRefused`` for a callback this browser did not start, one already used or
        too old, or a code identity refuses."""
        if visitor.fresh_cookie or not code or not state:
            raise SignInRefused("no sign-in of this browser is under way")
        async with self._uow() as uow:
            row = await SignInRows(uow.session).take(hash_cookie(visitor.cookie), state)
            await uow.commit()
        if row is None or row["created_at"] < self._now() - SIGN_IN_WITHIN:
            raise SignInRefused("no sign-in of this browser is under way with that state")
        tokens = await self._identity.exchange_code(code, verifier=row["code_verifier"],
                                                    redirect_uri=row["redirect_uri"])
        return await self.start(visitor, tokens), str(row["next_url"])

    async def start(self, visitor: Visitor, tokens: Tokens) -> Visitor:
        me = await self._identity.me(tokens.access_token)
        fresh = self.new_visitor()
        roles = ",".join(sorted(str(r) for r in me.get("roles", [])))
        async with self._uow() as uow:
            rows = SessionRows(uow.session)
            if not visitor.fresh_cookie:
                await rows.delete(hash_cookie(visitor.cookie))
            await rows.add(id_hash=hash_cookie(fresh.cookie), customer_id=str(me["id"]),
                           email=str(me.get("email", "")), name=str(me.get("name", "")),
                           roles=roles, access_token=tokens.access_token,
                           refresh_token=tokens.refresh_token, access_expires_at=_at(tokens),
                           last_seen_at=self._now())
            await uow.commit()
        fresh.customer = Customer(id=str(me["id"]), email=str(me.get("email", "")),
                                  name=str(me.get("name", "")),
                                  roles=frozenset(filter(None, roles.split(","))),
                                  access_token=tokens.access_token)
        return fresh

    async def sign_out(self, visitor: Visitor) -> Visitor:
        if not visitor.fresh_cookie:
            async with self._uow() as uow:
                await SessionRows(uow.session).delete(hash_cookie(visitor.cookie))
                await uow.commit()
        return self.new_visitor()


def _at(tokens: Tokens) -> datetime:
    return datetime.fromtimestamp(tokens.expires_at, UTC)


def _customer_of(row: dict[str, object]) -> Customer:
    return Customer(id=str(row["customer_id"]), email=str(row["email"]), name=str(row["name"]),
                    roles=frozenset(filter(None, str(row["roles"]).split(","))),
                    access_token=str(row["access_token"]))
