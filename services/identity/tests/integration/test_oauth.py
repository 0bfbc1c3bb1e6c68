"""The authorization code flow with PKCE against a real PostgreSQL: the sign-in page, the
code exchange, and every refusal RFC 6749 and RFC 7636 ask for (ADR 0022)."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from chassis.testing import assert_problem
from fastapi.testclient import TestClient
from httpx2 import Response
from identity.entrypoints.cli import main
from identity_http import API, PASSWORD, bearer, login, refresh, register
from identity_oauth import (
    CLIENT_SECRET,
    REDIRECT,
    answer,
    authorize_params,
    form_of,
    parse,
    pkce,
    token_form,
)

pytestmark = pytest.mark.integration

FAST = {"IDENTITY_ARGON2_TIME_COST": "1", "IDENTITY_ARGON2_MEMORY_COST_KIB": "8",
        "IDENTITY_ARGON2_PARALLELISM": "1"}
LOOPBACK_REDIRECT = "http://127.0.0.1:8080/auth/callback"


@pytest.fixture
def register_client(database_url: str, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``python -m identity register-client``, in-process, the way ``mercato up`` runs it."""
    for name, value in {"IDENTITY_DATABASE_URL": database_url, **FAST}.items():
        monkeypatch.setenv(name, value)

    def run(*args: str, stdin: str = CLIENT_SECRET + "\n") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(["register-client", *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def storefront(register_client: Any, client: TestClient) -> TestClient:
    """A confidential client ``storefront`` and ann@example.com with an account."""
    code, out, _ = register_client("storefront", "--redirect-uri", REDIRECT,
                                   "--redirect-uri", LOOPBACK_REDIRECT, "--secret-stdin")
    assert code == 0, out
    assert register(client).status_code == 201
    return client


def get_page(client: TestClient, params: dict[str, str]) -> Response:
    return client.get(f"{API}/authorize", params=params, follow_redirects=False)


def sign_in(client: TestClient, challenge: str, **params: Any) -> Response:
    """Shows the page, then posts its form with Ann's credentials."""
    page = get_page(client, authorize_params(challenge, **params))
    assert page.status_code == 200, page.text
    return client.post(f"{API}/authorize", follow_redirects=False, data=form_of(
        parse(page), username="ann@example.com", password=PASSWORD))


def code_for(client: TestClient, challenge: str, **params: Any) -> str:
    resp = sign_in(client, challenge, **params)
    assert resp.status_code == 303, resp.text
    return answer(resp)["code"]


def basic(client_id: str = "storefront", secret: str = CLIENT_SECRET) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode())
            .decode()}


def exchange(client: TestClient, code: str, verifier: str, *,
             headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return client.post(f"{API}/token", data=token_form(code, verifier, **extra),
                       headers=basic() if headers is None else headers)


def test_code_flow_with_pkce_signs_in_and_returns_the_password_grants_tokens(
        storefront: TestClient, sql: Any) -> None:
    verifier, challenge = pkce()
    page = get_page(storefront, authorize_params(challenge, scope="profile orders"))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "form-action 'self' http://localhost:8080" in csp and "script-src 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "path=/api/identity/authorize" in cookie

    sent = storefront.post(f"{API}/authorize", follow_redirects=False, data=form_of(
        parse(page), username="ANN@example.com", password=PASSWORD))
    assert sent.status_code == 303
    assert sent.headers["location"].startswith(REDIRECT + "?")
    back = answer(sent)
    assert back["state"] == "st-123" and set(back) == {"code", "state"}
    assert sql("SELECT scope FROM authorization_codes") == "profile orders"

    tokens = exchange(storefront, back["code"], verifier)
    assert tokens.status_code == 200, tokens.text
    assert tokens.headers["cache-control"] == "no-store"
    pair = tokens.json()
    assert set(pair) == {"access_token", "token_type", "expires_in", "refresh_token"}
    header = jwt.get_unverified_header(pair["access_token"])
    assert header["alg"] == "RS256" and header["kid"]
    me = storefront.get(f"{API}/me", headers=bearer(pair["access_token"]))
    assert me.json()["email"] == "ann@example.com"
    assert refresh(storefront, pair["refresh_token"]).status_code == 200


def test_client_secret_post_and_the_loopback_redirect_uri_work_too(
        storefront: TestClient) -> None:
    verifier, challenge = pkce()
    code = code_for(storefront, challenge, redirect_uri=LOOPBACK_REDIRECT)
    tokens = exchange(storefront, code, verifier, redirect_uri=LOOPBACK_REDIRECT, headers={},
                      client_id="storefront", client_secret=CLIENT_SECRET)
    assert tokens.status_code == 200, tokens.text


def test_a_public_client_uses_pkce_alone(register_client: Any, client: TestClient) -> None:
    assert register_client("cli-app", "--redirect-uri", "http://127.0.0.1:9999/cb",
                           "--public")[0] == 0
    assert register(client).status_code == 201
    verifier, challenge = pkce()
    code = code_for(client, challenge, client_id="cli-app",
                    redirect_uri="http://127.0.0.1:9999/cb")
    form = token_form(code, verifier, redirect_uri="http://127.0.0.1:9999/cb",
                      client_id="cli-app")
    # A public client has no secret to send; one that sends a secret is refused.
    assert client.post(f"{API}/token", data={**form, "client_secret": "x" * 40}) \
        .status_code == 401
    assert client.post(f"{API}/token", data=form).status_code == 200


def test_wrong_verifier_is_invalid_grant(storefront: TestClient) -> None:
    _, challenge = pkce()
    other_verifier, _ = pkce()
    code = code_for(storefront, challenge)
    body = assert_problem(exchange(storefront, code, other_verifier), 400)
    assert body["error"] == "invalid_grant" and "code_verifier" in body["error_description"]
    # A verifier outside RFC 7636's alphabet or length is just as wrong, not a 500.
    assert assert_problem(exchange(storefront, code, "short"), 400)["error"] == "invalid_grant"


def test_a_reused_code_is_refused_and_revokes_what_it_issued(
        storefront: TestClient, sql: Any) -> None:
    verifier, challenge = pkce()
    code = code_for(storefront, challenge)
    first = exchange(storefront, code, verifier)
    assert first.status_code == 200
    body = assert_problem(exchange(storefront, code, verifier), 400)
    assert body["error"] == "invalid_grant" and "already used" in body["error_description"]
    assert sql("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL") == 0
    assert assert_problem(refresh(storefront, first.json()["refresh_token"]), 400)["error"] \
        == "invalid_grant"


def test_an_expired_code_is_refused(storefront: TestClient, sql: Any) -> None:
    verifier, challenge = pkce()
    code = code_for(storefront, challenge)
    assert sql("SELECT extract(epoch FROM expires_at - issued_at)::int "
               "FROM authorization_codes") == 60
    sql("UPDATE authorization_codes SET expires_at = now() - interval '1 second' "
        "RETURNING 1")
    body = assert_problem(exchange(storefront, code, verifier), 400)
    assert body["error"] == "invalid_grant" and "expired" in body["error_description"]


def test_a_code_is_bound_to_its_client_and_redirect_uri(
        storefront: TestClient, register_client: Any) -> None:
    assert register_client("other", "--redirect-uri", REDIRECT, "--secret-stdin",
                           stdin="o" * 40 + "\n")[0] == 0
    verifier, challenge = pkce()
    code = code_for(storefront, challenge)
    assert assert_problem(exchange(storefront, code, verifier, headers=basic("other", "o" * 40)),
                          400)["error"] == "invalid_grant"
    assert assert_problem(exchange(storefront, code, verifier,
                                   redirect_uri=LOOPBACK_REDIRECT), 400)["error"] \
        == "invalid_grant"
    assert exchange(storefront, code, verifier).status_code == 200


@pytest.mark.parametrize("headers", [
    basic(secret="wrong" * 8), basic(client_id="nobody"), {},
    {"Authorization": "Basic !!!"}, {"Authorization": "Bearer abc"},
])
def test_client_authentication_failures_are_401_invalid_client(
        storefront: TestClient, headers: dict[str, str], sql: Any) -> None:
    verifier, challenge = pkce()
    code = code_for(storefront, challenge)
    resp = exchange(storefront, code, verifier, headers=headers)
    body = assert_problem(resp, 401)
    assert body["error"] == "invalid_client"
    assert resp.headers["www-authenticate"].startswith("Basic")
    assert sql("SELECT count(*) FROM authorization_codes WHERE used_at IS NULL") == 1


@pytest.mark.parametrize("params", [
    {"redirect_uri": "http://localhost:8080/auth/callback/"},
    {"redirect_uri": "http://localhost:8081/auth/callback"},
    {"redirect_uri": "http://evil.example/auth/callback"},
    {"redirect_uri": REDIRECT + "?next=/x"},
    {"redirect_uri": None},
    {"client_id": "nobody"},
    {"client_id": None},
    {"client_id": "x" * 5000},
])
def test_unknown_client_or_redirect_uri_is_an_error_page_never_a_redirect(
        storefront: TestClient, params: dict[str, Any]) -> None:
    _, challenge = pkce()
    query = {k: v for k, v in {**authorize_params(challenge), **params}.items() if v is not None}
    for resp in (get_page(storefront, query),
                 storefront.post(f"{API}/authorize", data=query, follow_redirects=False)):
        assert resp.status_code == 400, resp.text
        assert "location" not in resp.headers
        assert resp.headers["content-type"].startswith("text/html")
        assert parse(resp).alerts


@pytest.mark.parametrize(("params", "error", "echoed_state"), [
    ({"state": None}, "invalid_request", None),
    ({"state": ""}, "invalid_request", None),
    ({"state": "\x7f" * 3}, "invalid_request", None),
    ({"method": "plain"}, "invalid_request", "st-123"),
    ({"method": None}, "invalid_request", "st-123"),
    ({"code_challenge": "too-short"}, "invalid_request", "st-123"),
    ({"response_type": "token"}, "unsupported_response_type", "st-123"),
    ({"scope": "a\\b"}, "invalid_scope", "st-123"),
])
def test_other_errors_go_back_to_the_client_with_error(
        storefront: TestClient, params: dict[str, Any], error: str,
        echoed_state: str | None) -> None:
    _, challenge = pkce()
    query = authorize_params(challenge, **{k: v for k, v in params.items()
                                           if k in ("state", "method")})
    query |= {k: v for k, v in params.items() if k not in ("state", "method")}
    if params.get("method", "S256") is None:
        query.pop("code_challenge_method", None)
    resp = get_page(storefront, {k: v for k, v in query.items() if v is not None})
    assert resp.status_code == 302, resp.text
    assert resp.headers["location"].startswith(REDIRECT + "?")
    back = answer(resp)
    assert back["error"] == error and back["error_description"]
    assert back.get("state") == echoed_state
    if params.get("method") == "plain":
        assert "S256" in back["error_description"]


def test_the_state_comes_back_exactly_and_a_changed_one_is_refused(
        storefront: TestClient, sql: Any) -> None:
    _, challenge = pkce()
    odd_state = "a b&c=d/?~!%20"
    assert answer(sign_in(storefront, challenge, state=odd_state))["state"] == odd_state
    page = parse(get_page(storefront, authorize_params(challenge)))
    # The form's token fits the request it was shown for: another state is not accepted.
    forged = storefront.post(f"{API}/authorize", follow_redirects=False, data=form_of(
        page, username="ann@example.com", password=PASSWORD, state="attacker-state"))
    assert forged.status_code == 403 and "location" not in forged.headers
    assert sql("SELECT count(*) FROM authorization_codes") == 1


def test_form_posts_without_a_valid_csrf_token_are_refused(
        storefront: TestClient, sql: Any) -> None:
    _, challenge = pkce()
    page = parse(get_page(storefront, authorize_params(challenge)))
    good = form_of(page, username="ann@example.com", password=PASSWORD)
    without_token = {k: v for k, v in good.items() if k != "csrf_token"}
    wrong_token = {**good, "csrf_token": "A" * 43}
    attempts = [storefront.post(f"{API}/authorize", data=without_token, follow_redirects=False),
                storefront.post(f"{API}/authorize", data=wrong_token, follow_redirects=False)]
    # The right token from a browser without the cookie (another site posting the form).
    storefront.cookies.clear()
    attempts.append(storefront.post(f"{API}/authorize", data=good, follow_redirects=False))
    for resp in attempts:
        assert resp.status_code == 403, resp.text
        assert "location" not in resp.headers
        assert "not accepted" in parse(resp).alerts[0]
    assert sql("SELECT count(*) FROM authorization_codes") == 0
    assert sql("SELECT count(*) FROM login_failures") == 0


def test_the_sign_in_page_is_labelled_and_keyboard_usable(storefront: TestClient) -> None:
    _, challenge = pkce()
    page = parse(get_page(storefront, authorize_params(challenge)))
    assert page.html_lang == "en" and page.title.strip()
    visible = [i for i in page.inputs if i.get("type") != "hidden"]
    assert {i["name"] for i in visible} == {"username", "password"}
    for field in visible:
        assert page.labels.get(field["id"]), f"no label for {field['id']}"
        assert "tabindex" not in field and "autocomplete" in field
    assert page.buttons == ["Sign in"]


def test_wrong_credentials_show_the_form_again_and_share_the_password_grants_throttle(
        storefront: TestClient, sql: Any) -> None:
    _, challenge = pkce()
    page = parse(get_page(storefront, authorize_params(challenge)))
    address = {"x-mercato-client-address": "203.0.113.9"}
    for _ in range(4):
        resp = storefront.post(f"{API}/authorize", headers=address, follow_redirects=False,
                               data=form_of(page, username="ann@example.com",
                                            password="wrong password"))
        assert resp.status_code == 400 and "location" not in resp.headers
        again = parse(resp)
        assert again.alerts == ["The email or password is wrong."]
        assert again.fields["username"] == "ann@example.com"
    # The fifth failure comes through the password grant: one throttle for both.
    assert login(storefront, password="wrong password",
                 from_address="203.0.113.9").status_code == 400
    throttled = storefront.post(f"{API}/authorize", headers=address, follow_redirects=False,
                                data=form_of(page, username="ann@example.com",
                                             password=PASSWORD))
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "1"
    assert "Too many failed sign-ins" in parse(throttled).alerts[0]
    assert sql("SELECT failures FROM login_failures") == 5
    assert sql("SELECT count(*) FROM authorization_codes") == 0


def test_register_client_creates_updates_and_refuses_bad_input(
        register_client: Any, sql: Any) -> None:
    args = ("web", "--redirect-uri", REDIRECT, "--secret-stdin")
    assert register_client(*args)[:2] == (0, f"created confidential client web "
                                             f"(redirect URIs: {REDIRECT})\n")
    assert register_client(*args)[1].startswith("unchanged")
    assert register_client("web", "--redirect-uri", LOOPBACK_REDIRECT, "--secret-stdin")[1] \
        .startswith("updated")
    assert sql("SELECT redirect_uris FROM oauth_clients") == [LOOPBACK_REDIRECT]
    assert sql("SELECT length(secret_hash) FROM oauth_clients") == 64
    for bad, message in [
        (("web", "--redirect-uri", "http://example.com/cb", "--public"), "https"),
        (("web", "--redirect-uri", "https://shop.example/cb#x", "--public"), "fragment"),
        (("Web!", "--redirect-uri", REDIRECT, "--public"), "client id"),
        (("web", "--redirect-uri", REDIRECT, "--secret-stdin"), "32"),
    ]:
        code, out, err = register_client(*bad, stdin="short\n")
        assert code == 2 and out == "", err
        assert err.startswith("python -m identity register-client: error: ")
        assert message in err and "Traceback" not in err
    assert sql("SELECT count(*) FROM oauth_clients") == 1


def test_admins_register_clients_over_the_api(client: TestClient, make_admin: Any) -> None:
    make_admin("root@example.com")
    admin = bearer(login(client, username="root@example.com").json()["access_token"])
    created = client.post(f"{API}/admin/clients", headers=admin, json={
        "client_id": "partner", "redirect_uris": ["https://partner.example/cb"]})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["confidential"] is True and len(body["client_secret"]) >= 32
    assert created.headers["cache-control"] == "no-store"
    assert_problem(client.post(f"{API}/admin/clients", headers=admin, json={
        "client_id": "partner", "redirect_uris": ["https://partner.example/cb"]}), 409)
    assert_problem(client.post(f"{API}/admin/clients", headers=admin, json={
        "client_id": "bad", "redirect_uris": ["http://partner.example/cb"]}), 422)
    listed = client.get(f"{API}/admin/clients", headers=admin).json()["items"]
    assert listed == [{"client_id": "partner", "redirect_uris": ["https://partner.example/cb"],
                       "confidential": True}]
    assert register(client, email="bob@example.com").status_code == 201
    customer = bearer(login(client, username="bob@example.com").json()["access_token"])
    assert_problem(client.get(f"{API}/admin/clients", headers=customer), 403)
    assert_problem(client.post(f"{API}/admin/clients", headers=customer, json={
        "client_id": "mine", "redirect_uris": [REDIRECT]}), 403)
