"""The shop accepts the services' access tokens (ADR 0032): a JWT from identity, checked
against a JWKS as the services check it, and mapped to the customer by
``customers.services_id``. Anything wrong with it is a 401 problem+json, never a 500."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm
from legacy.app import create_app
from legacy.domain import Problem
from legacy.migrate import upgrade_to_head
from legacy.settings import Settings
from legacy.tokens import ServiceTokens
from legacy_kit import settings, sign_up, sql

pytestmark = pytest.mark.integration

ISSUER, AUDIENCE, KID = "mercato-identity", "mercato", "k1"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Jwks(ThreadingHTTPServer):
    """identity's JWKS, as a file served on 127.0.0.1."""

    def __init__(self) -> None:
        jwk = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
        self.document = {"keys": [{**jwk, "kid": KID, "alg": "RS256", "use": "sig"}]}
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps(outer.document).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/.well-known/jwks.json"


@pytest.fixture(scope="module")
def jwks() -> Iterator[Jwks]:
    server = Jwks()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def database_url(pg_server) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = pg_server.create_database(name)
    upgrade_to_head(url)
    try:
        yield url
    finally:
        pg_server.drop_database(name)


def app_client(database_url: str, provider_url: str, **extra: Any) -> TestClient:
    return TestClient(create_app(settings(database_url, provider_url, **extra)),
                      raise_server_exceptions=False)


@pytest.fixture
def c(database_url: str, provider_url: str, jwks: Jwks) -> Iterator[TestClient]:
    with app_client(database_url, provider_url, jwks_url=jwks.url) as tc:
        yield tc


def token(sub: str, *, key: Any = KEY, kid: str | None = KID, alg: str = "RS256",
          ttl_s: int = 300, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "roles": ["customer"],
                              "iat": now, "exp": now + ttl_s, **overrides}
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def bearer(t: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {t}"}


def customer(c: TestClient, database_url: str) -> tuple[dict[str, str], str]:
    """A signed-up customer's session headers and services_id."""
    email = f"jwt-{uuid.uuid4().hex[:10]}@example.com"
    auth = sign_up(c, email)
    sid = sql(database_url, "SELECT services_id FROM customers WHERE email = $1", email)[0][0]
    return auth, str(sid)


def is_401(r: Any) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 401


def test_a_services_token_signs_the_customer_in_by_services_id(c: TestClient,
                                                               database_url: str) -> None:
    auth, sid = customer(c, database_url)
    by_session = c.get("/shop/me", headers={"Authorization": auth["Authorization"]}).json()
    assert by_session["services_id"] == sid
    r = c.get("/shop/me", headers=bearer(token(sid)))
    assert r.status_code == 200, r.text
    assert r.json() == by_session
    # The customer's legacy-only paths too: order history, addresses.
    assert c.get("/shop/orders", headers=bearer(token(sid))).status_code == 200
    addresses = c.get("/shop/addresses", headers=bearer(token(sid))).json()
    assert [a["id"] for a in addresses] == [int(auth["address_id"])]


def test_an_expired_token_is_a_401(c: TestClient, database_url: str) -> None:
    _, sid = customer(c, database_url)
    is_401(c.get("/shop/me", headers=bearer(token(sid, ttl_s=-60))))


def test_a_token_signed_with_another_key_is_a_401(c: TestClient, database_url: str) -> None:
    _, sid = customer(c, database_url)
    is_401(c.get("/shop/me", headers=bearer(token(sid, key=OTHER_KEY))))  # same kid, forged
    is_401(c.get("/shop/me", headers=bearer(token(sid, key=OTHER_KEY, kid="unknown"))))


def test_an_unknown_subject_is_a_401(c: TestClient) -> None:
    is_401(c.get("/shop/me", headers=bearer(token(str(uuid.uuid4())))))
    is_401(c.get("/shop/me", headers=bearer(token("not-a-uuid"))))


@pytest.mark.parametrize("bad", [
    {"iss": "someone-else"}, {"aud": "other"}, {"alg": "HS256", "key": "secret" * 8},
    {"kid": None}, {"drop": "exp"}, {"drop": "sub"}])
def test_tokens_the_services_would_refuse_are_refused(c: TestClient, database_url: str,
                                                      bad: dict[str, Any]) -> None:
    _, sid = customer(c, database_url)
    bad = dict(bad)
    drop = bad.pop("drop", None)
    if drop:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": sid, "iat": now, "exp": now + 300}
        claims.pop(drop)
        t = jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": KID})
    else:
        t = token(sid, **bad)
    is_401(c.get("/shop/me", headers=bearer(t)))


def test_garbage_that_looks_like_a_jwt_is_a_401(c: TestClient) -> None:
    for t in ("a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30.", "...", "eyJ.eyJ.x"):
        is_401(c.get("/shop/me", headers=bearer(t)))


def test_unknown_kids_do_not_fetch_the_jwks_every_time(c: TestClient, database_url: str,
                                                       jwks: Jwks) -> None:
    _, sid = customer(c, database_url)
    assert c.get("/shop/me", headers=bearer(token(sid))).status_code == 200
    before = jwks.fetches
    for i in range(5):
        is_401(c.get("/shop/me", headers=bearer(token(sid, kid=f"forged-{i}"))))
    assert jwks.fetches - before <= 1


def test_keys_that_cannot_be_read_are_a_503_not_a_500(database_url: str,
                                                      provider_url: str) -> None:
    with app_client(database_url, provider_url,
                    jwks_url="http://127.0.0.1:9/.well-known/jwks.json") as c:
        auth, sid = customer(c, database_url)
        r = c.get("/shop/me", headers=bearer(token(sid)))
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        # The shop's own sessions do not need identity.
        assert c.get("/shop/me", headers={"Authorization": auth["Authorization"]}
                     ).status_code == 200


def test_without_a_jwks_url_a_jwt_is_just_an_unknown_session(database_url: str,
                                                            provider_url: str) -> None:
    with app_client(database_url, provider_url) as c:
        _, sid = customer(c, database_url)
        is_401(c.get("/shop/me", headers=bearer(token(sid))))


def test_the_settings_read_the_identity_provider_from_the_environment() -> None:
    env = {"LEGACY_DATABASE_URL": "postgresql+asyncpg://x/y"}
    assert Settings.from_env(env).jwks_url is None
    s = Settings.from_env({**env, "LEGACY_JWKS_URL": "http://127.0.0.1:1/jwks",
                           "LEGACY_JWT_ISSUER": "iss", "LEGACY_JWT_AUDIENCE": "aud"})
    assert (s.jwks_url, s.jwt_issuer, s.jwt_audience) == ("http://127.0.0.1:1/jwks", "iss",
                                                           "aud")


async def test_a_rotated_key_is_fetched_when_a_token_names_it(jwks: Jwks) -> None:
    tokens = ServiceTokens(jwks.url, issuer=ISSUER, audience=AUDIENCE, min_refetch_s=0)
    sub = str(uuid.uuid4())
    assert str(await tokens.subject(token(sub))) == sub
    before = jwks.fetches
    assert str(await tokens.subject(token(sub))) == sub  # cached: no fetch
    assert jwks.fetches == before
    rotated = json.loads(RSAAlgorithm.to_jwk(OTHER_KEY.public_key()))
    saved = jwks.document
    jwks.document = {"keys": [*saved["keys"], {**rotated, "kid": "k2", "alg": "RS256"}]}
    try:
        assert str(await tokens.subject(token(sub, key=OTHER_KEY, kid="k2"))) == sub
        assert jwks.fetches == before + 1
    finally:
        jwks.document = saved
    with pytest.raises(Problem) as refused:
        await tokens.subject(token(sub, key=OTHER_KEY, kid="k3"))
    assert refused.value.status == 401
