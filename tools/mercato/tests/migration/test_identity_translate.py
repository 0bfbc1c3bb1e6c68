"""The ACL's identity translations (ADR 0032): legacy requests in, the calls identity gets,
legacy answers out; and the cache of exchanged tokens. identity is a recording stand-in
here; test_identity_bridge.py runs the real one beside the real monolith."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

import httpx2 as httpx
from acl_standins import serve
from aiohttp import web
from chassis.registry_keys import new_key_pair
from chassis.service_identity import CallerSigner, CallerVerifier
from mercato.migration.acl import Acl, ExchangedTokens, looks_like_jwt, token_of
from mercato.migration.ids import services_id
from mercato.migration.translate import Answer, identity_answer

LEGACY_BORN = str(services_id("customers", 41))
SERVICES_BORN = str(uuid.uuid4())
ADDRESS = {"id": str(services_id("addresses", 7)), "user_id": LEGACY_BORN, "name": "Ann",
           "line1": "1 Test-ro", "line2": None, "city": "Seoul", "postal_code": "04100",
           "country": "KR", "phone": None}


class Identity:
    """Answers by (method, path); records every call."""

    def __init__(self, answers: Mapping[tuple[str, str], Answer]) -> None:
        self.answers = dict(answers)
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, method: str, path: str, *, token: str | None = None,
                       json_body: Any = None, form: Mapping[str, str] | None = None) -> Answer:
        self.calls.append({"method": method, "path": path, "token": token, "json": json_body,
                           "form": dict(form) if form is not None else None})
        return self.answers[(method, path)]


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


async def test_register_answers_the_legacy_shape_and_errors() -> None:
    idp = Identity({("POST", "/api/identity/register"): Answer(201, {
        "id": LEGACY_BORN, "email": "ann@example.com", "name": "Ann"})})
    got = await identity_answer("POST", "/shop/register", body(
        {"email": " ann@example.com ", "password": "correct horse", "name": "Ann"}), None, idp)
    assert got == Answer(201, {"id": 41, "email": "ann@example.com", "name": "Ann"})
    assert idp.calls[0]["json"] == {"email": "ann@example.com", "password": "correct horse",
                                    "name": "Ann"}
    # Born in the services: no legacy id until the sync writes the account into the shop.
    idp.answers[("POST", "/api/identity/register")] = Answer(201, {
        "id": SERVICES_BORN, "email": "bo@example.com", "name": "Bo"})
    got = await identity_answer("POST", "/shop/register", body(
        {"email": "bo@example.com", "password": "correct horse", "name": "Bo"}), None, idp)
    assert got.body == {"id": None, "email": "bo@example.com", "name": "Bo"}
    idp.answers[("POST", "/api/identity/register")] = Answer(409, {"status": 409})
    got = await identity_answer("POST", "/shop/register", body(
        {"email": "bo@example.com", "password": "correct horse", "name": "Bo"}), None, idp)
    assert (got.status, got.body["title"]) == (409, "Email taken")
    idp.answers[("POST", "/api/identity/register")] = Answer(422, {"detail": "too short"})
    assert (await identity_answer("POST", "/shop/register", body(
        {"email": "bo@example.com", "password": "x", "name": "Bo"}), None, idp)).status == 422


async def test_what_the_monolith_refuses_is_refused_before_identity_is_asked() -> None:
    idp = Identity({})
    for raw in (b"", b"[]", b"{", body({"email": "a@b.cd", "password": "p"}),
                body({"email": "a@b.cd", "password": "p", "name": "A", "admin": True}),
                body({"email": "a@b.cd", "password": "p", "name": " "}),
                body({"email": "a@b.cd", "password": "p" * 129, "name": "A"}),
                body({"email": "a@b.cd", "password": "p\x00", "name": "A"})):
        got = await identity_answer("POST", "/shop/register", raw, None, idp)
        assert got.status == 422 and got.body["title"] == "Invalid request", raw
    got = await identity_answer("POST", "/shop/addresses", body({"recipient": "A"}), "jwt", idp)
    assert got.status == 422
    got = await identity_answer("POST", "/shop/addresses", body(
        {"recipient": "A", "line1": "1", "city": "C", "postal_code": "1", "country": "kr"}),
        "jwt", idp)
    assert got.status == 422
    assert idp.calls == []


async def test_login_is_the_password_grant_answered_as_a_legacy_session() -> None:
    idp = Identity({("POST", "/api/identity/token"): Answer(200, {
        "access_token": "a.b.c", "token_type": "bearer", "expires_in": 900,
        "refresh_token": "r"})})
    got = await identity_answer("POST", "/shop/login", body(
        {"email": "ann@example.com", "password": "correct horse"}), None, idp)
    assert got.status == 200
    assert got.body == {"token": "a.b.c", "token_type": "bearer", "expires_in": 900}
    assert got.headers == (("set-cookie", "legacy_session=a.b.c; HttpOnly; Max-Age=900; "
                                          "Path=/shop; SameSite=lax"),)
    assert idp.calls[0]["form"] == {"grant_type": "password", "username": "ann@example.com",
                                    "password": "correct horse"}
    idp.answers[("POST", "/api/identity/token")] = Answer(400, {"error": "invalid_grant"})
    got = await identity_answer("POST", "/shop/login", body(
        {"email": "ann@example.com", "password": "wrong one"}), None, idp)
    assert (got.status, got.body["title"]) == (401, "Wrong email or password")
    idp.answers[("POST", "/api/identity/token")] = Answer(
        429, {"status": 429}, headers=(("retry-after", "4"),))
    got = await identity_answer("POST", "/shop/login", body(
        {"email": "ann@example.com", "password": "wrong one"}), None, idp)
    assert (got.status, got.headers) == (429, (("retry-after", "4"),))
    idp.answers[("POST", "/api/identity/token")] = Answer(0, None, error="ClientError")
    got = await identity_answer("POST", "/shop/login", body(
        {"email": "ann@example.com", "password": "x"}), None, idp)
    assert got.status == 502


async def test_me_and_addresses_in_the_legacy_shape() -> None:
    idp = Identity({
        ("GET", "/api/identity/me"): Answer(200, {"id": LEGACY_BORN, "email": "ann@example.com",
                                                  "name": "Ann", "roles": ["customer"]}),
        ("GET", "/api/identity/me/addresses"): Answer(200, {"items": [
            ADDRESS, {**ADDRESS, "id": str(uuid.uuid4()), "line2": "Apt 3"}]}),
        ("POST", "/api/identity/me/addresses"): Answer(201, ADDRESS)})
    me = await identity_answer("GET", "/shop/me", b"", "a.b.c", idp)
    assert me == Answer(200, {"id": 41, "email": "ann@example.com", "name": "Ann",
                              "is_admin": False, "services_id": LEGACY_BORN})
    assert idp.calls[-1]["token"] == "a.b.c"
    listed = await identity_answer("GET", "/shop/addresses", b"", "a.b.c", idp)
    legacy = {"id": 7, "recipient": "Ann", "line1": "1 Test-ro", "city": "Seoul",
              "postal_code": "04100", "country": "KR", "services_id": ADDRESS["id"]}
    other = listed.body[1]["services_id"]
    assert listed == Answer(200, [legacy, {**legacy, "id": None, "services_id": other}])
    added = await identity_answer("POST", "/shop/addresses", body(
        {"recipient": "Ann", "line1": "1 Test-ro", "city": "Seoul", "postal_code": "04100"}),
        "a.b.c", idp)
    assert added == Answer(201, legacy)
    assert idp.calls[-1]["json"] == {"name": "Ann", "line1": "1 Test-ro", "city": "Seoul",
                                     "postal_code": "04100", "country": "KR"}


async def test_signed_out_and_unknown_routes() -> None:
    idp = Identity({("GET", "/api/identity/me"): Answer(401, {"status": 401}),
                    ("GET", "/api/identity/me/addresses"): Answer(401, {"status": 401})})
    for method, path in (("GET", "/shop/me"), ("GET", "/shop/addresses"),
                         ("POST", "/shop/addresses"), ("POST", "/shop/logout")):
        got = await identity_answer(method, path, b"{}", None, idp)
        assert (got.status, got.body["title"]) == (401, "Not signed in"), path
    assert idp.calls == []
    assert (await identity_answer("GET", "/shop/me", b"", "expired.jwt.x", idp)).status == 401
    assert (await identity_answer("GET", "/shop/login", b"", None, idp)).status == 405
    assert (await identity_answer("GET", "/shop/me/x", b"", None, idp)).status == 404


async def test_logout_of_a_services_token_clears_the_cookie() -> None:
    idp = Identity({("GET", "/api/identity/me"): Answer(200, {
        "id": LEGACY_BORN, "email": "a@b.cd", "name": "A", "roles": ["customer"]})})
    got = await identity_answer("POST", "/shop/logout", b"", "a.b.c", idp)
    assert got.status == 204 and got.headers[0][0] == "set-cookie"
    assert "Max-Age=0" in got.headers[0][1] and "legacy_session=" in got.headers[0][1]


def test_tokens_are_read_as_the_monolith_reads_them() -> None:
    assert token_of({"authorization": "Bearer abc"}, {"legacy_session": "x"}) == "abc"
    assert token_of({}, {"legacy_session": "x"}) == "x"
    assert token_of({"authorization": "Basic abc"}, {}) is None
    assert looks_like_jwt("a.b.c") and not looks_like_jwt("Zm9v-bar_baz")


def test_exchanged_tokens_are_kept_by_hash_until_shortly_before_expiry() -> None:
    now = [1000.0]
    cache = ExchangedTokens(margin_s=60, max_entries=2, clock=lambda: now[0])
    cache.put("session-1", "jwt-1", 300)
    assert cache.get("session-1") == "jwt-1" and cache.get("session-2") is None
    assert "session-1" not in repr(cache._items)  # only its hash is kept
    now[0] += 239
    assert cache.get("session-1") == "jwt-1"
    now[0] += 1
    assert cache.get("session-1") is None  # 60 s before it expires: exchanged again
    cache.put("short", "jwt", 30)  # shorter than the margin: not kept at all
    assert cache.get("short") is None
    for n in range(3):
        cache.put(f"s{n}", f"j{n}", 300)
    assert len(cache) == 2 and cache.get("s0") is None
    cache.forget("s1")
    assert cache.get("s1") is None and cache.get("s2") == "j2"


# -- the ACL's exchange, against stand-ins that misbehave in ways the real sides rarely do --

class Standins:
    def __init__(self) -> None:
        self.me_status = 200
        self.exchange: tuple[int, Any] = (200, {"access_token": "x.y.z", "expires_in": 300})
        self.seen: list[tuple[str, dict[str, str]]] = []

    def legacy(self) -> Any:
        async def me(request: web.Request) -> web.Response:
            self.seen.append(("legacy me", dict(request.headers)))
            if self.me_status != 200:
                return web.json_response({"status": self.me_status}, status=self.me_status)
            return web.json_response({"id": 41, "services_id": LEGACY_BORN})

        app = web.Application()
        app.router.add_get("/shop/me", me)
        return app

    def identity(self) -> Any:
        async def exchange(request: web.Request) -> web.Response:
            self.seen.append(("exchange", dict(request.headers)))
            return web.json_response(self.exchange[1], status=self.exchange[0])

        async def me(request: web.Request) -> web.Response:
            self.seen.append(("identity me", dict(request.headers)))
            return web.json_response({"id": LEGACY_BORN, "email": "a@b.cd", "name": "A",
                                      "roles": ["customer"]})

        app = web.Application()
        app.router.add_post("/api/identity/exchange", exchange)
        app.router.add_get("/api/identity/me", me)
        return app


async def _get_me(signer: Any, standins: Standins, token: str = "legacy-session"
                  ) -> tuple[int, Any]:
    async with serve(standins.legacy()) as lurl, serve(standins.identity()) as iurl:
        acl = Acl(legacy_url=lurl, services_url=iurl, signer=signer)
        # Not an aiohttp client: where an earlier test of the session instrumented aiohttp,
        # it would write its own trace over the one this client sends.
        async with serve(acl.app()) as url, httpx.AsyncClient() as http:
            resp = await http.get(url + "/shop/me", headers={
                "mercato-primary": "services", "mercato-capability": "identity",
                "authorization": f"Bearer {token}",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
            return resp.status_code, (resp.json() if resp.content else None)


async def test_the_exchange_is_signed_and_the_trace_goes_along() -> None:
    private, public = new_key_pair()
    standins = Standins()
    status, me = await _get_me(CallerSigner("acl", private), standins)
    assert status == 200 and me["services_id"] == LEGACY_BORN
    (_, legacy), (_, exchange), (_, identity) = standins.seen
    assert legacy["Authorization"] == "Bearer legacy-session"
    assert CallerVerifier("identity", {"acl": public}).verify(exchange["Mercato-Caller"]) \
        == "acl"
    assert identity["Authorization"] == "Bearer x.y.z"
    assert identity["traceparent"].startswith("00-0af7651916cd43dd")


async def test_when_the_exchange_cannot_be_made() -> None:
    signer = CallerSigner("acl", new_key_pair()[0])
    standins = Standins()
    assert (await _get_me(None, standins))[0] == 503  # no service identity: say so
    standins.me_status = 401
    assert (await _get_me(signer, standins))[0] == 401  # the monolith does not know it
    standins.me_status = 500
    assert (await _get_me(signer, standins))[0] == 502
    standins.me_status = 200
    standins.exchange = (404, {"status": 404})
    status, problem = await _get_me(signer, standins)
    assert status == 503 and "not reached the services" in problem["detail"]
    standins.exchange = (200, {"token": "no access_token here"})
    assert (await _get_me(signer, standins))[0] == 502
    standins.exchange = (200, {"access_token": "x.y.z", "expires_in": "soon"})
    assert (await _get_me(signer, standins))[0] == 502  # never a 500
