"""The anti-corruption layer as a process: legacy paths answered from either side, and the
shadow comparison.

The edge sends it a capability's legacy requests when they are to be served by the services
(``mercato-primary: services``) or shadowed (``mercato-shadow: 1``, reads only). It:

- serves the primary side's answer: the monolith's, passed through untouched, or one built
  from the services' answers by ``translate`` (through the edge, like any client);
- for a shadowed read, asks the other side too, after answering, and compares the two
  (``compare``): a counter per route, the last mismatches kept with both bodies at
  ``/acl/mismatches``. At most ``max_shadow`` comparisons run at once; more are skipped
  and counted rather than queued, so a slow side never slows the primary one down.

It never writes on the shadow side: only GET and HEAD are shadowed, whatever the headers say.
Metrics at ``/metrics`` feed `mercato migrate status` and the shift guard.

Identity (ADR 0032): a services access token (a JWT) a client sends is passed on as it is;
a legacy session token is first checked by the monolith (``GET /shop/me`` with it) and
exchanged at identity for a short-lived access token for that account, with the ACL's own
signed service identity (``ACL_SIGNING_KEY``); the exchanged token is cached per legacy token
(by its hash) until shortly before it expires.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import structlog
from aiohttp import web
from chassis.http_client import H_SERVICE_IDENTITY
from chassis.service_identity import CallerSigner
from opentelemetry import context as otel_context
from opentelemetry import propagate
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client import exposition as prom_exposition

from mercato.migration.capabilities import Capability, of_path
from mercato.migration.compare import MismatchLog, compare, route_label
from mercato.migration.routes import CAPABILITY, CART, LEGACY, PRIMARY, SERVICES, SHADOW
from mercato.migration.shopping import (
    Call,
    cart_answer,
    checkout_answer,
    checkout_outcome,
    empty_services_cart,
    from_cart,
    history_answer,
    items_from_services_cart,
    move_legacy_cart,
)
from mercato.migration.translate import (
    COOKIE,
    LOGOUT_COOKIE,
    NOT_SIGNED_IN,
    PUBLIC_IDENTITY,
    Answer,
    NotTranslated,
    answer,
    identity_answer,
    problem,
)

READS = ("GET", "HEAD")
SHOPPING = ("cart", "checkout", "history")
UNKNOWN_ACCOUNT = "Account not on the services yet"
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate",
                        "proxy-authorization", "te", "trailers", "transfer-encoding",
                        "upgrade", "host", "content-length", PRIMARY, SHADOW, CAPABILITY,
                        CART})
MAX_BODY = 4 << 20
# Carried from the client's request to the services, so a translated read joins its trace.
TRACE_HEADERS = ("traceparent", "tracestate", "x-request-id")
CALLER = "acl"  # the identity identity lets exchange sessions (identity.entrypoints.api)
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCOUNT_ID = "urn:mercato:params:oauth:token-type:account-id"

log = structlog.get_logger("mercato.migration.acl")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "acl_upstream_requests", "Requests the ACL made to each side",
            ["capability", "side", "role", "outcome"], registry=self.registry)
        self.comparisons = Counter(
            "acl_shadow_comparisons", "Shadowed reads compared",
            ["capability", "route"], registry=self.registry)
        self.mismatches = Counter(
            "acl_shadow_mismatches", "Shadowed reads whose answers differed after "
            "normalisation", ["capability", "route"], registry=self.registry)
        self.skipped = Counter(
            "acl_shadow_skipped", "Shadowed reads not compared (too many under way)",
            ["capability"], registry=self.registry)
        self.exchanges = Counter(
            "acl_token_exchanges", "Legacy sessions turned into services access tokens: "
            "exchanged, cached, refused (not a session), unknown (no such account on the "
            "services), failed", ["outcome"], registry=self.registry)
        self.checkouts = Counter(
            "acl_checkouts", "Checkouts the ACL answered from the services, by outcome: "
            "placed, replayed, declined, refused, invalid, pending (placed but not finished "
            "within the wait: a 503), error", ["outcome"], registry=self.registry)
        self.cart_moves = Counter(
            "acl_cart_lines_moved", "Lines moved from the monolith's carts into the "
            "services' carts", registry=self.registry)


def token_of(headers: Mapping[str, str], cookies: Mapping[str, str]) -> str | None:
    """The customer's token as the monolith reads it: bearer first, then its cookie."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return cookies.get(COOKIE) or None


def looks_like_jwt(token: str) -> bool:
    # The monolith's session tokens are token_urlsafe: no dots. A JWT has exactly two.
    return token.count(".") == 2


class ExchangedTokens:
    """Services access tokens per legacy session, by the session's sha256 (the ACL never
    keeps a session token itself), each until ``margin_s`` before it expires; at most
    ``max_entries``, the oldest dropped first."""

    def __init__(self, margin_s: float = 60.0, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._items: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._margin, self._max, self._clock = margin_s, max_entries, clock

    @staticmethod
    def _key(legacy_token: str) -> str:
        return hashlib.sha256(legacy_token.encode()).hexdigest()

    def get(self, legacy_token: str) -> str | None:
        key = self._key(legacy_token)
        found = self._items.get(key)
        if found is None:
            return None
        if found[1] <= self._clock():
            del self._items[key]
            return None
        return found[0]

    def put(self, legacy_token: str, access_token: str, expires_in: float) -> None:
        until = self._clock() + max(0.0, expires_in - self._margin)
        if until <= self._clock():
            return  # too short-lived to be worth keeping
        key = self._key(legacy_token)
        self._items[key] = (access_token, until)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def forget(self, legacy_token: str) -> None:
        self._items.pop(self._key(legacy_token), None)

    def __len__(self) -> int:
        return len(self._items)


class Acl:
    def __init__(self, *, legacy_url: str, services_url: str, max_shadow: int = 8,
                 keep_mismatches: int = 100, timeout_s: float = 10.0,
                 signer: CallerSigner | None = None,
                 exchanged: ExchangedTokens | None = None,
                 checkout_wait_s: float = 8.0) -> None:
        # Below the edge's 15 s route timeout, with room for placing the order.
        self.checkout_wait_s = checkout_wait_s
        self.signer = signer
        self.exchanged = exchanged or ExchangedTokens()
        self.legacy_url = legacy_url.rstrip("/")
        self.services_url = services_url.rstrip("/")
        self.metrics = Metrics()
        self.mismatches = MismatchLog(keep_mismatches)
        self.max_shadow = max_shadow
        self.shadows: set[asyncio.Task[None]] = set()
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, connect=2)
        self.http: aiohttp.ClientSession | None = None

    # -- the two sides ---------------------------------------------------------------------

    async def _get_json(self, url: str, params: Mapping[str, Any],
                        headers: Mapping[str, str] | None = None, method: str = "GET",
                        body: bytes | None = None) -> tuple[Answer, Mapping[str, str], bytes]:
        assert self.http is not None
        query = [(k, v) for k, vs in params.items()
                 for v in (vs if isinstance(vs, list) else [vs])]
        try:
            async with self.http.request(method, url, params=query, headers=headers,
                                         data=body, allow_redirects=False) as resp:
                if (resp.content_length or 0) > MAX_BODY:
                    return Answer(0, None, error=f"an answer above {MAX_BODY} bytes"), {}, b""
                raw = await resp.read()
                try:
                    parsed = json.loads(raw) if raw else None
                except ValueError:
                    parsed = raw.decode("utf-8", "replace")
                return Answer(resp.status, parsed), dict(resp.headers), raw
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Answer(0, None, error=type(exc).__name__ + (f": {exc}" if str(exc) else "")), \
                {}, b""

    async def services_fetch(self, path: str, params: Mapping[str, Any],
                             trace: Mapping[str, str] | None = None) -> Answer:
        got, _, _ = await self._get_json(self.services_url + path, params,
                                         headers={"accept": "application/json", **(trace or {})})
        return got

    async def services_call(self, method: str, path: str, *, token: str | None = None,
                            json_body: Any = None, form: Mapping[str, str] | None = None,
                            headers: Mapping[str, str] | None = None) -> Answer:
        sent = {"accept": "application/json", **(headers or {})}
        body: bytes | None = None
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        if json_body is not None:
            body, sent["content-type"] = json.dumps(json_body).encode(), "application/json"
        elif form is not None:
            body = urlencode(form).encode()
            sent["content-type"] = "application/x-www-form-urlencoded"
        got, got_headers, _ = await self._get_json(self.services_url + path, {}, sent, method,
                                                   body)
        retry = {k.lower(): v for k, v in got_headers.items()}.get("retry-after")
        return Answer(got.status, got.body, got.error,
                      (("retry-after", retry),) if retry else ())

    # -- identity: the customer's services token --------------------------------------------

    async def services_token(self, request: web.Request) -> str | Answer | None:
        """The customer's services access token: theirs if they sent one, or one exchanged
        for their legacy session; None without any token; an Answer when it cannot be had."""
        token = token_of(request.headers, request.cookies)
        if token is None:
            return None
        if looks_like_jwt(token):
            return token  # identity, or the monolith, checks it
        cached = self.exchanged.get(token)
        if cached is not None:
            self.metrics.exchanges.labels("cached").inc()
            return cached
        # The monolith vouches for its own session: who it is, and the UUID the services
        # know the account by.
        me, _, _ = await self._get_json(self.legacy_url + "/shop/me", {}, {
            "authorization": f"Bearer {token}", "accept": "application/json"})
        if me.status == 401:
            self.metrics.exchanges.labels("refused").inc()
            return NOT_SIGNED_IN
        account = me.body.get("services_id") if isinstance(me.body, dict) else None
        if me.status != 200 or not account:
            self.metrics.exchanges.labels("failed").inc()
            return problem(502, "Bad Gateway", "the legacy shop could not check the session "
                           f"({me.error or me.status})")
        if self.signer is None:
            self.metrics.exchanges.labels("failed").inc()
            return problem(503, "Session exchange unavailable", "the anti-corruption layer "
                           "has no service identity (ACL_SIGNING_KEY) to exchange sessions")
        got = await self.services_call("POST", "/api/identity/exchange", form={
            "grant_type": EXCHANGE, "subject_token": str(account),
            "subject_token_type": ACCOUNT_ID},
            headers={H_SERVICE_IDENTITY: self.signer.token_for("identity")})
        if got.status == 404:
            # Signed in at the monolith, not (yet) on the services: the customer sync lags
            # or has not run. Not a 401, which would sign a valid customer out; counted as
            # the services side failing, so the guard stops a shift made too early.
            self.metrics.exchanges.labels("unknown").inc()
            return Answer(503, problem(503, UNKNOWN_ACCOUNT,
                                       "this customer's account has not reached the "
                                       "services; try again shortly").body,
                          headers=(("retry-after", "5"),))
        if got.status != 200 or not isinstance(got.body, dict) \
                or not isinstance(got.body.get("access_token"), str):
            self.metrics.exchanges.labels("failed").inc()
            return problem(502, "Bad Gateway", "identity did not exchange the session "
                           f"({got.error or got.status})")
        access = str(got.body["access_token"])
        self.exchanged.put(token, access, float(got.body.get("expires_in", 0)))
        self.metrics.exchanges.labels("exchanged").inc()
        return access

    async def identity(self, request: web.Request, body: bytes) -> Answer:
        trace = {k: v for k in TRACE_HEADERS if (v := request.headers.get(k))}

        async def call(method: str, path: str, *, token: str | None = None,
                       json_body: Any = None, form: Mapping[str, str] | None = None) -> Answer:
            return await self.services_call(method, path, token=token, json_body=json_body,
                                            form=form, headers=trace)

        try:
            key = (request.method, request.path)
            if key in PUBLIC_IDENTITY:
                return await identity_answer(request.method, request.path, body, None, call)
            raw = token_of(request.headers, request.cookies)
            if key == ("POST", "/shop/logout") and raw is not None \
                    and not looks_like_jwt(raw):
                return await self._legacy_logout(raw)
            token = await self.services_token(request)
            if isinstance(token, Answer):
                return token
            return await identity_answer(request.method, request.path, body, token, call)
        except (KeyError, TypeError, ValueError) as exc:
            # An answer of either side without the fields its contract promises.
            log.warning("acl.identity_unexpected_answer", path=request.path,
                        error=f"{type(exc).__name__}: {exc}")
            return problem(502, "Bad Gateway", "an upstream answer was not as documented")

    async def _legacy_logout(self, legacy_token: str) -> Answer:
        """A legacy session ends where it lives, at the monolith (the customer's orders may
        still be served there), and its exchanged token is forgotten here."""
        self.exchanged.forget(legacy_token)
        got, _, _ = await self._get_json(self.legacy_url + "/shop/logout", {}, {
            "authorization": f"Bearer {legacy_token}"}, "POST")
        if got.status == 204:
            return Answer(204, None, headers=(("set-cookie", LOGOUT_COOKIE),))
        if got.status == 401:
            return NOT_SIGNED_IN
        return problem(502, "Bad Gateway", "the legacy shop could not end the session "
                       f"({got.error or got.status})")

    async def from_services(self, cap: Capability, request: web.Request, role: str,
                            body: bytes = b"") -> Answer:
        trace = {k: v for k in TRACE_HEADERS if (v := request.headers.get(k))}

        async def fetch(path: str, params: Mapping[str, Any]) -> Answer:
            return await self.services_fetch(path, params, trace)

        # The client's trace made current too: where the process's HTTP client is
        # instrumented, it injects the current context and would otherwise start a new trace
        # over the headers passed above.
        token = otel_context.attach(propagate.extract(request.headers))
        try:
            if cap.name == "identity":
                got = await self.identity(request, body)
            elif cap.name in SHOPPING:
                got = await self.shopping(cap, request, body)
            else:
                got = await answer(request.method, request.path, request.query, fetch)
        except NotTranslated:
            got = problem(501, "Not Implemented",
                          f"the anti-corruption layer cannot answer {request.method} "
                          f"{request.path} from the services yet")
        finally:
            otel_context.detach(token)
        self._count(cap, SERVICES, role, got)
        return got

    # -- cart, checkout and history (ADR 0035) -----------------------------------------------

    def _calls(self, request: web.Request) -> tuple[Call, Call]:
        trace = {k: v for k in TRACE_HEADERS if (v := request.headers.get(k))}

        def on(base: str) -> Call:
            async def call(method: str, path: str, *, token: str | None = None,
                           json_body: Any = None, params: Mapping[str, str] | None = None,
                           headers: Mapping[str, str] | None = None) -> Answer:
                sent = {"accept": "application/json", **trace, **(headers or {})}
                if token is not None:
                    sent["authorization"] = f"Bearer {token}"
                body = None
                if json_body is not None:
                    body = json.dumps(json_body).encode()
                    sent["content-type"] = "application/json"
                got, got_headers, _ = await self._get_json(base + path, params or {}, sent,
                                                           method, body)
                retry = {k.lower(): v for k, v in got_headers.items()}.get("retry-after")
                return Answer(got.status, got.body, got.error,
                              (("retry-after", retry),) if retry else ())
            return call

        return on(self.services_url), on(self.legacy_url)

    async def shopping(self, cap: Capability, request: web.Request, body: bytes) -> Answer:
        """Cart, checkout or history answered by the services (history: by both sides)."""
        legacy_token = token_of(request.headers, request.cookies)
        token = await self.services_token(request)
        if isinstance(token, Answer):
            return token
        if token is None or legacy_token is None:
            return NOT_SIGNED_IN
        services, legacy = self._calls(request)
        try:
            if cap.name == "history":
                return await history_answer(request.method, request.path, request.query,
                                            token, legacy_token, services, legacy)
            if cap.name == "checkout":
                if request.method != "POST":
                    return problem(405, "Method Not Allowed", "Method Not Allowed")
                # A cart still at the monolith is bought too: moved first (checkout is
                # shifted after the cart, docs/migration.md); only for a valid checkout
                # from the cart, so a refused request writes nothing.
                if from_cart(body):
                    _, failed = await self._move_cart(legacy_token, token, services, legacy)
                    if failed is not None:
                        return failed
                got = await checkout_answer(body, request.headers.get("idempotency-key"),
                                            token, legacy_token, services, legacy,
                                            wait_s=self.checkout_wait_s,
                                            received_at=datetime.now(UTC))
                self.metrics.checkouts.labels(checkout_outcome(got)).inc()
                return got
            _, failed = await self._move_cart(legacy_token, token, services, legacy)
            if failed is not None:
                return failed
            return await cart_answer(request.method, request.path, body, token, services)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("acl.shopping_unexpected_answer", path=request.path,
                        error=f"{type(exc).__name__}: {exc}")
            return problem(502, "Bad Gateway", "an upstream answer was not as documented")

    async def _move_cart(self, legacy_token: str, token: str, services: Call,
                         legacy: Call) -> tuple[int, Answer | None]:
        moved, failed = await move_legacy_cart(token, legacy_token, services, legacy)
        if moved:
            self.metrics.cart_moves.inc(moved)
            log.info("acl.cart_moved", lines=moved)
        return moved, failed

    async def checkout_with_services_cart(self, request: web.Request, body: bytes) -> Answer:
        """A checkout the monolith serves for a customer whose cart is on the services: the
        services' cart becomes the checkout's ``items``, and its ordered lines leave the
        services' cart once the monolith has the order (a replay with the same key finds
        them gone, or removes them if the first answer was lost)."""
        legacy_token = token_of(request.headers, request.cookies)
        services, legacy = self._calls(request)
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            doc = None
        token = await self.services_token(request) if legacy_token is not None else None
        if isinstance(token, Answer):
            unknown = isinstance(token.body, dict) and token.body.get("title") == UNKNOWN_ACCOUNT
            if token.status != 401 and not unknown:
                return token
            # Not signed in (the monolith says so itself), or not on the services yet (so no
            # cart there): the monolith's checkout as it is.
            token = None
        items: list[dict[str, int]] = []
        if token is not None and isinstance(doc, dict) and doc.get("items") is None:
            items, failed = await items_from_services_cart(token, services)
            if failed is not None:
                return failed
            if items:
                body = json.dumps({**doc, "items": items}).encode()
        headers = {k: v for k in ("idempotency-key",) if (v := request.headers.get(k))}
        got = await self._legacy_checkout(legacy, legacy_token, body, headers)
        if token is not None and items and got.status in (200, 201) \
                and isinstance(got.body, dict):
            await empty_services_cart(token, got.body, services)
        return got

    async def _legacy_checkout(self, legacy: Call, legacy_token: str | None, body: bytes,
                               headers: Mapping[str, str]) -> Answer:
        sent = dict(headers)
        sent["content-type"] = "application/json"
        if legacy_token is not None:
            sent["authorization"] = f"Bearer {legacy_token}"
        got, _, _ = await self._get_json(self.legacy_url + "/shop/checkout", {}, {
            "accept": "application/json", **sent}, "POST", body)
        if got.error is not None:
            return problem(502, "Bad Gateway", f"the legacy shop did not answer ({got.error})")
        return got

    async def from_legacy(self, cap: Capability, request: web.Request, body: bytes,
                          role: str) -> tuple[Answer, Mapping[str, str], bytes]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        got = await self._get_json(self.legacy_url + request.path, request.query, headers,
                                   request.method, body or None)
        self._count(cap, LEGACY, role, got[0])
        return got

    def _count(self, cap: Capability, side: str, role: str, got: Answer) -> None:
        self.metrics.requests.labels(cap.name, side, role,
                                     "error" if got.failed else "ok").inc()

    # -- requests --------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        cap = of_path(request.path)
        if cap is None:
            return _json(problem(404, "Not Found", f"{request.path} belongs to no capability"))
        primary = request.headers.get(PRIMARY, LEGACY)
        if primary not in (LEGACY, SERVICES):
            return _json(problem(400, "Bad Request", f"{PRIMARY} is legacy or services"))
        body = await request.read()
        shadow = request.headers.get(SHADOW) == "1" and request.method in READS \
            and cap.shadow_reads
        if primary == LEGACY and cap.name == "checkout" \
                and request.headers.get(CART) == SERVICES:
            got = await self.checkout_with_services_cart(request, body)
            self._count(cap, LEGACY, "primary", got)
            response = _json(got)
        elif primary == LEGACY:
            got, headers, raw = await self.from_legacy(cap, request, body, "primary")
            response = _passthrough(got, headers, raw)
        else:
            got = await self.from_services(cap, request, "primary", body)
            response = _json(got)
        if shadow:
            self._shadow(cap, request, primary, got)
        return response

    def _shadow(self, cap: Capability, request: web.Request, primary: str,
                primary_answer: Answer) -> None:
        if len(self.shadows) >= self.max_shadow:
            self.metrics.skipped.labels(cap.name).inc()
            return
        task = asyncio.create_task(self._compare(cap, request, primary, primary_answer))
        self.shadows.add(task)
        task.add_done_callback(self.shadows.discard)

    async def _compare(self, cap: Capability, request: web.Request, primary: str,
                       primary_answer: Answer) -> None:
        if primary == LEGACY:
            legacy, services = primary_answer, await self.from_services(cap, request, "shadow")
        else:
            legacy = (await self.from_legacy(cap, request, b"", "shadow"))[0]
            services = primary_answer
        route = route_label(request.path)
        self.metrics.comparisons.labels(cap.name, route).inc()
        found = compare(legacy, services)
        if found:
            self.metrics.mismatches.labels(cap.name, route).inc()
            self.mismatches.add(cap.name, request.path_qs, primary, legacy, services, found)
            log.warning("acl.shadow_mismatch", capability=cap.name, route=route,
                        primary=primary, legacy_status=legacy.status,
                        services_status=services.status, differences=found[:3],
                        traceparent=request.headers.get("traceparent"))

    # -- the app -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)

        async def live(_: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(self.metrics.registry),
                                headers={"content-type": prom_exposition.CONTENT_TYPE_LATEST})

        async def mismatches(request: web.Request) -> web.Response:
            return web.json_response({"items": self.mismatches.recent(
                request.query.get("capability"))})

        async def session(_: web.Application) -> Any:
            self.http = aiohttp.ClientSession(timeout=self.timeout)
            yield
            for task in list(self.shadows):
                task.cancel()
            await self.http.close()

        app.cleanup_ctx.append(session)
        app.router.add_get("/health/live", live)
        app.router.add_get("/health/ready", live)
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/acl/mismatches", mismatches)
        app.router.add_route("*", "/shop/{tail:.*}", self.handle)
        return app


def _json(got: Answer) -> web.Response:
    headers = list(got.headers)  # pairs: Set-Cookie may repeat
    if got.status == 204:
        return web.Response(status=204, headers=headers)  # type: ignore[arg-type]
    headers.append(("content-type", "application/problem+json" if got.status >= 400
                    else "application/json"))
    return web.Response(status=got.status, text=json.dumps(got.body), content_type=None,
                        headers=headers)  # type: ignore[arg-type]


def _passthrough(got: Answer, headers: Mapping[str, str], raw: bytes) -> web.Response:
    if got.error is not None:
        return _json(problem(502, "Bad Gateway", f"the legacy shop did not answer ({got.error})"))
    # The body was decoded by the client session: its original encoding no longer applies.
    keep = {k: v for k, v in headers.items()
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding"}
    return web.Response(status=got.status, body=raw, headers=keep)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mercato.migration.acl",
                                     description="The migration's anti-corruption layer.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--legacy-url", required=True)
    parser.add_argument("--services-url", required=True, help="the edge")
    parser.add_argument("--max-shadow", type=int, default=8)
    parser.add_argument("--checkout-wait-s", type=float, default=8.0,
                        help="how long a checkout waits for its services order to finish "
                             "before answering 503 (ADR 0035); 0-12, under the edge's 15 s")
    args = parser.parse_args(argv)
    if not 0 <= args.checkout_wait_s <= 12:
        parser.error("--checkout-wait-s must be 0-12 (the edge gives up on a legacy route "
                     "after 15 s)")
    key = os.environ.get("ACL_SIGNING_KEY")
    acl = Acl(legacy_url=args.legacy_url, services_url=args.services_url,
              max_shadow=args.max_shadow, checkout_wait_s=args.checkout_wait_s,
              signer=CallerSigner(CALLER, key) if key else None)

    async def serve() -> None:
        runner = web.AppRunner(acl.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.host, args.port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
