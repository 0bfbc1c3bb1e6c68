"""Helpers for driving identity's HTTP API in tests."""

from __future__ import annotations

from typing import Any

from chassis.registry_keys import new_key_pair
from chassis.service_identity import CallerSigner
from fastapi.testclient import TestClient
from httpx2 import Response

API = "/api/identity"
PASSWORD = "correct horse battery"
# login_failures is left out: a failed sign-in is a refusal that must be remembered.
TABLES = ("users", "addresses", "refresh_tokens", "signing_keys")


def register(client: TestClient, email: str = "ann@example.com", name: str = "Ann",
             password: str = PASSWORD) -> Response:
    return client.post(f"{API}/register", json={"email": email, "password": password,
                                                "name": name})


def login(client: TestClient, username: str = "ann@example.com",
          password: str = PASSWORD, from_address: str | None = None) -> Response:
    """The password grant; ``from_address`` is the client address the edge would set."""
    headers = {"x-mercato-client-address": from_address} if from_address else {}
    return client.post(f"{API}/token", data={"grant_type": "password", "username": username,
                                             "password": password}, headers=headers)


def refresh(client: TestClient, token: str) -> Response:
    return client.post(f"{API}/token", data={"grant_type": "refresh_token",
                                             "refresh_token": token})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def signed_up(client: TestClient, email: str = "ann@example.com") -> dict[str, Any]:
    """Registers and logs in; returns the token response."""
    assert register(client, email=email, name=email.split("@")[0]).status_code == 201
    resp = login(client, username=email)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def counts(sql: Any) -> dict[str, int]:
    return {t: sql(f"SELECT count(*) FROM {t}") for t in TABLES}


# The keys two services sign their calls with (chassis.service_identity); identity trusts both.
CALLER_KEYS = {name: new_key_pair() for name in ("orders", "cart", "acl", "sync")}


def calling_as(service: str, target: str = "identity") -> dict[str, str]:
    """The Mercato-Caller header a service's client sends (signed with its key)."""
    return {"Mercato-Caller": CallerSigner(service, CALLER_KEYS[service][0]).token_for(target)}
