"""The token exchange for the migration's ACL (ADR 0032): a legacy session the monolith
vouched for becomes a short-lived, customer-only access token for that account, issued only
to the ACL's verified service identity; no refresh token, nothing stored."""

from __future__ import annotations

import uuid
from typing import Any

import jwt
import pytest
from chassis.testing import assert_problem
from fastapi.testclient import TestClient
from identity_http import API, bearer, calling_as, counts, login, signed_up

pytestmark = pytest.mark.integration

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCOUNT_ID = "urn:mercato:params:oauth:token-type:account-id"


def exchange(client: TestClient, account: str, headers: dict[str, str] | None = None,
             **form: str) -> Any:
    data = {"grant_type": EXCHANGE, "subject_token": account,
            "subject_token_type": ACCOUNT_ID, **form}
    return client.post(f"{API}/exchange", data=data,
                       headers=calling_as("acl") if headers is None else headers)


def test_the_acl_gets_a_short_customer_only_access_token(client: TestClient, sql: Any,
                                                         make_admin: Any) -> None:
    ann = signed_up(client)
    me = client.get(f"{API}/me", headers=bearer(ann["access_token"])).json()
    before = counts(sql)
    got = exchange(client, me["id"])
    assert got.status_code == 200, got.text
    assert got.headers["cache-control"] == "no-store"
    body = got.json()
    assert set(body) == {"access_token", "issued_token_type", "token_type", "expires_in"}
    assert (body["issued_token_type"], body["token_type"], body["expires_in"]) == (
        "urn:ietf:params:oauth:token-type:access_token", "bearer", 300)
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert (claims["sub"], claims["roles"], claims["act"]) == (me["id"], ["customer"],
                                                               {"sub": "acl"})
    assert claims["exp"] - claims["iat"] == 300
    # It works like any access token of the account's, and wrote nothing (no session).
    assert client.get(f"{API}/me", headers=bearer(body["access_token"])).json() == me
    assert counts(sql) == before
    # An admin's exchanged token is a customer's: the ACL acts on the shop's paths only.
    make_admin("root@example.com")
    admin = login(client, username="root@example.com").json()["access_token"]
    assert "admin" in jwt.decode(admin, options={"verify_signature": False})["roles"]
    admin_id = client.get(f"{API}/me", headers=bearer(admin)).json()["id"]
    claims = jwt.decode(exchange(client, admin_id).json()["access_token"],
                        options={"verify_signature": False})
    assert claims["roles"] == ["customer"]


def test_any_other_caller_is_refused(client: TestClient) -> None:
    ann = signed_up(client)
    account = client.get(f"{API}/me", headers=bearer(ann["access_token"])).json()["id"]
    forged = calling_as("acl")["Mercato-Caller"][:-4] + "AAAA"
    for headers in ({}, {"Mercato-Caller": "acl"}, calling_as("orders"),
                    calling_as("acl", target="catalog"), {"Mercato-Caller": forged},
                    bearer(ann["access_token"])):
        assert_problem(exchange(client, account, headers=headers), 403)
    # Refused before the account is looked up: a stranger learns nothing about accounts.
    assert_problem(exchange(client, str(uuid.uuid4()), headers=calling_as("orders")), 403)


def test_unknown_accounts_and_bad_requests(client: TestClient) -> None:
    assert_problem(exchange(client, str(uuid.uuid4())), 404)
    for account, form, code in (
            ("not-a-uuid", {}, "invalid_request"),
            ("", {}, "invalid_request"),
            (str(uuid.uuid4()), {"grant_type": "password"}, "unsupported_grant_type"),
            (str(uuid.uuid4()), {"subject_token_type": "urn:x"}, "invalid_request"),
            (str(uuid.uuid4()), {"requested_token_type": "urn:ietf:params:oauth:token-type:"
                                                         "refresh_token"}, "invalid_request")):
        body = assert_problem(exchange(client, account, **form), 400)
        assert body["error"] == code, body
