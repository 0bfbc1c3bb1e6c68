"""What identity refuses, over HTTP against a real PostgreSQL: every refusal is a 4xx
problem+json and writes nothing. The tests share one app and database (each checks the row
counts itself), with ann@example.com registered and logged in."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from chassis.testing import PROBLEM_JSON, assert_problem
from identity_http import API, PASSWORD, bearer, counts

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("payload", [
    {"email": "not-an-email", "password": PASSWORD, "name": "Bob"},
    {"email": "bob@example.com", "password": "short", "name": "Bob"},
    {"email": "bob@example.com", "password": "x" * 129, "name": "Bob"},
    {"email": "bob@example.com", "password": " " * 10, "name": "Bob"},
    {"email": "bob@example.com", "password": PASSWORD, "name": ""},
    {"email": "bob@example.com", "password": PASSWORD, "name": "Bob\nSmith"},
    {"email": "bob@example.com", "password": PASSWORD},
    {"email": "bob@example.com", "password": PASSWORD, "name": "Bob", "roles": ["admin"]},
    {"email": ["bob@example.com"], "password": PASSWORD, "name": "Bob"},
])
def test_invalid_registration_is_422_and_writes_nothing(shared: Any,
                                                        payload: dict[str, Any]) -> None:
    before = counts(shared.sql)
    resp = shared.client.post(f"{API}/register", json=payload)
    body = assert_problem(resp, 422)
    assert body["errors"]
    assert PASSWORD not in resp.text  # inputs are never echoed back
    assert counts(shared.sql) == before


def test_malformed_bodies_are_4xx_problems_and_write_nothing(shared: Any) -> None:
    client = shared.client
    before = counts(shared.sql)
    form = {"content-type": "application/x-www-form-urlencoded"}
    attempts = [
        client.post(f"{API}/register", content=b"{not json",
                    headers={"content-type": "application/json"}),
        client.post(f"{API}/register", content=b"\xff\xfe\x00",
                    headers={"content-type": "application/json"}),
        client.post(f"{API}/register", json=[1, 2, 3]),
        client.post(f"{API}/register", content=b"email=bob%40example.com", headers=form),
        client.post(f"{API}/token", json={"grant_type": "password",
                                          "username": "ann@example.com",
                                          "password": PASSWORD}),
        client.post(f"{API}/token", content=b"grant_type=password&username=%ZZ", headers=form),
        client.post(f"{API}/me/addresses", content=b"{", headers={
            "content-type": "application/json", **bearer(shared.user_token)}),
        client.post(f"{API}/register", content=b"x" * 2_000_000,
                    headers={"content-type": "application/json"}),
        client.post(f"{API}/token", content=b"grant_type=password&password=" + b"x" * 2_000_000,
                    headers=form),
    ]
    for resp in attempts:
        assert 400 <= resp.status_code < 500, resp.text
        assert resp.headers["content-type"] == PROBLEM_JSON
    assert [r.status_code for r in attempts[-2:]] == [413, 413]
    assert counts(shared.sql) == before


@pytest.mark.parametrize(("form", "error"), [
    ({}, "invalid_request"),
    ({"grant_type": ""}, "invalid_request"),
    ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
    ({"grant_type": "implicit"}, "unsupported_grant_type"),
    ({"grant_type": "authorization_code", "client_id": "nobody", "code": "x"},
     "invalid_request"),
    ({"grant_type": "password", "username": "ann@example.com"}, "invalid_request"),
    ({"grant_type": "password", "password": PASSWORD}, "invalid_request"),
    ({"grant_type": "password", "username": "ann@example.com", "password": "x" * 1025},
     "invalid_request"),
    ({"grant_type": "refresh_token"}, "invalid_request"),
    ({"grant_type": "refresh_token", "refresh_token": "x" * 257}, "invalid_request"),
    ({"grant_type": "password", "username": "nobody@example.com", "password": PASSWORD},
     "invalid_grant"),
    ({"grant_type": "password", "username": "not an email", "password": PASSWORD},
     "invalid_grant"),
    ({"grant_type": "refresh_token", "refresh_token": "made-up"}, "invalid_grant"),
])
def test_token_errors_follow_rfc6749(shared: Any, form: dict[str, str], error: str) -> None:
    before = counts(shared.sql)
    body = assert_problem(shared.client.post(f"{API}/token", data=form), 400)
    assert body["error"] == error and body["error_description"]
    assert counts(shared.sql) == before


@pytest.mark.parametrize("bad", [
    {"country": "ZZ"}, {"country": "KOR"}, {"country": None}, {"postal_code": "??"},
    {"phone": "call me"}, {"city": ""}, {"line1": "x" * 201}, {"name": "Ann\u202e"},
    {"extra": "field"},
])
def test_invalid_addresses_are_422_and_write_nothing(shared: Any, bad: dict[str, Any]) -> None:
    before = counts(shared.sql)
    new = {"name": "Ann", "line1": "1 Main St", "city": "Seoul", "postal_code": "04524",
           "country": "KR", **bad}
    assert_problem(shared.client.post(f"{API}/me/addresses", json=new,
                                      headers=bearer(shared.user_token)), 422)
    assert counts(shared.sql) == before


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_forged_tokens_are_401_over_http(shared: Any) -> None:
    client, real = shared.client, shared.user_token
    header, payload, signature = real.split(".")
    claims = jwt.decode(real, options={"verify_signature": False})
    kid = jwt.get_unverified_header(real)["kid"]
    admin_claims = _b64({**claims, "roles": ["customer", "admin"]})
    forged = [
        f"{_b64({'alg': 'none', 'kid': kid})}.{admin_claims}.",
        f"{header}.{admin_claims}.{signature}",
        f"{_b64({'alg': 'RS256', 'kid': 'no-such-kid'})}.{payload}.{signature}",
        f"{header}.{payload}.{signature[:-4]}AAAA",
        "not-a-token",
    ]
    for token in forged:
        for path in (f"{API}/me", f"{API}/admin/keys/rotate"):
            method = client.get if path.endswith("/me") else client.post
            resp = method(path, headers=bearer(token))
            body = assert_problem(resp, 401)
            assert body["title"] == "Unauthorized"
            assert resp.headers["www-authenticate"].startswith("Bearer")
    assert_problem(client.get(f"{API}/me", headers={"Authorization": f"Basic {real}"}), 401)
    assert_problem(client.get(f"{API}/me"), 401)
    assert client.get(f"{API}/me", headers=bearer(real)).status_code == 200
