"""OAuth 2 sign-in through the edge (ADR 0022): `mercato up` registered the storefront as a
confidential client with the home's secret; a person signs in on identity's page, the client
exchanges the code (PKCE, HTTP Basic) for the same tokens the password grant gives, and the
edge checks those like any other. The sign-in page is public, its form rate-limited per
client address."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import stat
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from edge_helpers import Platform, new_client_address, superuser_connect

pytestmark = pytest.mark.e2e

CALLBACK = "/auth/callback"


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()) \
        .rstrip(b"=").decode()
    return verifier, challenge


def _storefront_secret(platform: Platform) -> str:
    """What the storefront gets as STOREFRONT_OAUTH_CLIENT_SECRET, kept 0600 in the home."""
    kept = platform.home / "secrets" / "storefront-oauth-client.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    return str(json.loads(kept.read_text())["secret"])


def _hidden_fields(html: str) -> dict[str, str]:
    return {m["name"]: unescape(m["value"]) for m in re.finditer(
        r'<input type="hidden" name="(?P<name>[^"]+)" value="(?P<value>[^"]*)">', html)}


def _basic(secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"storefront:{secret}".encode())
            .decode()}


def test_mercato_up_registered_the_storefront_with_both_callback_spellings(
        platform: Platform) -> None:
    async def read() -> Any:
        conn = await superuser_connect(platform, "identity")
        try:
            return await conn.fetchrow("SELECT redirect_uris, secret_hash FROM oauth_clients "
                                       "WHERE client_id = 'storefront'")
        finally:
            await conn.close()

    row = asyncio.run(read())
    port = urlsplit(platform.base_url).port
    assert row["redirect_uris"] == [f"http://localhost:{port}{CALLBACK}",
                                    f"http://127.0.0.1:{port}{CALLBACK}"]
    secret = _storefront_secret(platform)
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()


def test_code_flow_with_pkce_through_the_edge(platform: Platform) -> None:
    secret = _storefront_secret(platform)
    redirect_uri = f"{platform.base_url}{CALLBACK}"
    verifier, challenge = _pkce()
    with platform.client() as browser, platform.client() as server:
        account = platform.register(browser)
        page = browser.get("/api/identity/authorize", params={
            "response_type": "code", "client_id": "storefront", "redirect_uri": redirect_uri,
            "state": "e2e-state", "code_challenge": challenge, "code_challenge_method": "S256"})
        # Public: no token needed; an HTML page with the page headers, through the edge.
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"
        assert '<label for="username">' in page.text and '<label for="password">' in page.text

        form = {**_hidden_fields(page.text), "username": account["email"],
                "password": account["password"]}
        # Without the form's CSRF token: refused, nothing sent to the client.
        forged = browser.post("/api/identity/authorize",
                              data={k: v for k, v in form.items() if k != "csrf_token"})
        assert forged.status_code == 403 and "location" not in forged.headers
        signed_in = browser.post("/api/identity/authorize", data=form)
        assert signed_in.status_code == 303, signed_in.text
        location = signed_in.headers["location"]
        assert location.startswith(redirect_uri + "?")
        back = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        assert back["state"] == "e2e-state"

        # The storefront's server exchanges the code.
        exchange = {"grant_type": "authorization_code", "code": back["code"],
                    "redirect_uri": redirect_uri, "code_verifier": verifier}
        wrong = server.post("/api/identity/token", headers=_basic(secret),
                            data={**exchange, "code_verifier": _pkce()[0]})
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        tokens = server.post("/api/identity/token", headers=_basic(secret), data=exchange)
        assert tokens.status_code == 200, tokens.text
        pair = tokens.json()
        me = server.get("/api/identity/me",
                        headers={"Authorization": f"Bearer {pair['access_token']}"})
        assert me.status_code == 200 and me.json()["email"] == account["email"]

        # The code again: refused, and the session it started is revoked.
        again = server.post("/api/identity/token", headers=_basic(secret), data=exchange)
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
        refreshed = server.post("/api/identity/token", data={
            "grant_type": "refresh_token", "refresh_token": pair["refresh_token"]})
        assert refreshed.status_code == 400


def test_an_unregistered_redirect_uri_is_an_error_page_at_the_edge_too(
        platform: Platform) -> None:
    _, challenge = _pkce()
    with platform.client() as browser:
        page = browser.get("/api/identity/authorize", params={
            "response_type": "code", "client_id": "storefront", "state": "s",
            "redirect_uri": "http://attacker.example/auth/callback",
            "code_challenge": challenge, "code_challenge_method": "S256"})
    assert page.status_code == 400 and "location" not in page.headers
    assert 'role="alert"' in page.text


def test_the_sign_in_form_is_rate_limited_per_client_address(platform: Platform) -> None:
    flooder, other = new_client_address(), new_client_address()
    with platform.client(flooder) as c:
        statuses = [c.post("/api/identity/authorize", data={"client_id": "storefront"})
                    .status_code for _ in range(30)]
    # Burst 10, 5 a second: a quick run of 30 meets the client's bucket.
    assert 429 in statuses and statuses[0] != 429, statuses
    with platform.client(other) as c:
        assert c.post("/api/identity/authorize",
                      data={"client_id": "storefront"}).status_code == 400
