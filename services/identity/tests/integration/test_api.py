"""identity's HTTP API against a real PostgreSQL: the flows a storefront and other services
rely on."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from chassis.testing import assert_problem
from fastapi.testclient import TestClient
from identity_http import API, bearer, calling_as, login, refresh, register, signed_up

pytestmark = pytest.mark.integration


def test_register_then_token_then_me(client: TestClient) -> None:
    created = register(client, email="  Ann@Example.COM ", name=" Ann Lee ")
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "email", "name"}
    assert (body["email"], body["name"]) == ("ann@example.com", "Ann Lee")

    tokens = login(client, username="ANN@example.com")
    assert tokens.status_code == 200
    assert tokens.headers["cache-control"] == "no-store"
    pair = tokens.json()
    assert set(pair) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert (pair["token_type"], pair["expires_in"]) == ("bearer", 900)

    me = client.get(f"{API}/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200
    assert me.headers["cache-control"] == "no-store"  # one person's data
    assert me.json() == {"id": body["id"], "email": "ann@example.com", "name": "Ann Lee",
                         "roles": ["customer"]}
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    assert claims["sub"] == body["id"] and claims["roles"] == ["customer"]
    assert (claims["iss"], claims["aud"]) == ("mercato-identity", "mercato")


def test_duplicate_email_is_409_whatever_its_case(client: TestClient, sql: Any) -> None:
    assert register(client).status_code == 201
    body = assert_problem(register(client, email="ANN@example.com", name="Other"), 409)
    assert "exists" in body["detail"]
    assert sql("SELECT count(*) FROM users") == 1


OWNER, ATTACKER = "198.51.100.1", "203.0.113.66"


def test_a_guessing_client_is_delayed_and_the_owner_still_signs_in(
        client: TestClient, sql: Any) -> None:
    signed_up(client)
    for _ in range(5):
        body = assert_problem(login(client, password="wrong password", from_address=ATTACKER),
                              400)
        assert body["error"] == "invalid_grant"
    throttled = login(client, from_address=ATTACKER)  # the right password, too soon
    body = assert_problem(throttled, 429)
    assert throttled.headers["retry-after"] == "1" and body["retry_after"] == 1
    # The owner, on their own client, is not locked out.
    assert login(client, from_address=OWNER).status_code == 200
    assert sql("SELECT failures FROM login_failures WHERE client = '203.0.113.66'") == 5
    assert sql("SELECT count(*) FROM login_failures") == 1
    # Another account is not affected either.
    assert signed_up(client, "bob@example.com")["access_token"]


def test_unknown_accounts_get_the_same_answers_as_known_ones(client: TestClient) -> None:
    signed_up(client)

    def answers(username: str) -> list[tuple[int, str | None, dict[str, Any]]]:
        seen = []
        for _ in range(7):
            resp = login(client, username=username, password="wrong password",
                         from_address=ATTACKER)
            seen.append((resp.status_code, resp.headers.get("retry-after"), resp.json()))
        return seen

    known = answers("ann@example.com")
    assert [status for status, _r, _b in known] == [400] * 5 + [429] * 2
    assert answers("nobody@example.com") == known
    assert answers("not even an email") == known


def test_the_client_address_is_read_from_the_edges_header(client: TestClient,
                                                            sql: Any) -> None:
    signed_up(client)
    login(client, password="wrong password", from_address="2001:DB8::0:1")
    login(client, password="wrong password", from_address="not an address")
    clients = sql("SELECT string_agg(client, ',' ORDER BY client) FROM login_failures")
    # Normalised; a value that is no address falls back to the peer (none here).
    assert clients == "2001:db8::1,unknown"


def test_refresh_rotates_and_reuse_revokes_the_family(client: TestClient, sql: Any) -> None:
    first = signed_up(client)
    second = refresh(client, first["refresh_token"])
    assert second.status_code == 200, second.text
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    assert client.get(f"{API}/me", headers=bearer(pair["access_token"])).status_code == 200

    third = refresh(client, pair["refresh_token"]).json()
    reused = assert_problem(refresh(client, first["refresh_token"]), 400)
    assert reused["error"] == "invalid_grant"
    # The newest token of the family is dead too.
    assert assert_problem(refresh(client, third["refresh_token"]), 400)["error"] == \
        "invalid_grant"
    assert sql("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL") == 0
    assert sql("SELECT count(DISTINCT family_id) FROM refresh_tokens") == 1
    # A fresh login starts a new family that works.
    again = login(client).json()
    assert refresh(client, again["refresh_token"]).status_code == 200


def test_addresses_are_per_user(client: TestClient) -> None:
    ann = bearer(signed_up(client)["access_token"])
    bob = bearer(signed_up(client, "bob@example.com")["access_token"])
    new = {"name": "Ann Lee", "line1": "1 Main St", "line2": "Apt 2", "city": "Seoul",
           "postal_code": "04524", "country": "kr", "phone": "+82 10-1234-5678"}
    created = client.post(f"{API}/me/addresses", json=new, headers=ann)
    assert created.status_code == 201, created.text
    address = created.json()
    assert address["country"] == "KR" and address["line2"] == "Apt 2"
    assert created.headers["location"] == f"{API}/me/addresses/{address['id']}"
    minimal = client.post(f"{API}/me/addresses", headers=ann, json={
        "name": "Ann", "line1": "2 Side St", "city": "Busan", "postal_code": "48058",
        "country": "KR"}).json()
    assert minimal["line2"] is None and minimal["phone"] is None

    listed = client.get(f"{API}/me/addresses", headers=ann).json()["items"]
    assert [a["id"] for a in listed] == [address["id"], minimal["id"]]
    assert client.get(f"{API}/me/addresses/{address['id']}", headers=ann).json() == address
    assert client.get(f"{API}/me/addresses", headers=bob).json() == {"items": []}
    assert_problem(client.get(f"{API}/me/addresses/{address['id']}", headers=bob), 404)

    # The route for services: the calling service's signed identity and the customer's token.
    user_path = f"{API}/users/{address['user_id']}/addresses/{address['id']}"
    assert client.get(user_path, headers={**ann, **calling_as("orders")}).json() == address
    assert_problem(client.get(user_path, headers={**bob, **calling_as("orders")}), 403)
    bob_id = client.get(f"{API}/me", headers=bob).json()["id"]
    assert_problem(client.get(f"{API}/users/{bob_id}/addresses/{address['id']}",
                              headers={**bob, **calling_as("orders")}), 404)
    # Without a service identity, with a forged or misdirected one, or from a service that
    # has no business reading addresses: refused, whoever the customer is.
    refused = [{}, {"Mercato-Caller": "orders"}, calling_as("orders", target="catalog"),
               calling_as("cart"),
               {"Mercato-Caller": calling_as("orders")["Mercato-Caller"][:-4] + "AAAA"}]
    for caller in refused:
        problem = assert_problem(client.get(user_path, headers={**ann, **caller}), 403)
        assert "service" in problem["detail"] or "Mercato-Caller" in problem["detail"], problem
    assert_problem(client.get(f"{API}/me/addresses"), 401)


def test_admin_reads_any_address_and_rotates_keys(client: TestClient, sql: Any,
                                                  make_admin: Any) -> None:
    ann_tokens = signed_up(client)
    ann = bearer(ann_tokens["access_token"])
    address = client.post(f"{API}/me/addresses", headers=ann, json={
        "name": "Ann", "line1": "1 Main St", "city": "Seoul", "postal_code": "04524",
        "country": "KR"}).json()
    make_admin("root@example.com")
    admin_tokens = login(client, username="root@example.com").json()
    admin = bearer(admin_tokens["access_token"])
    assert client.get(f"{API}/me", headers=admin).json()["roles"] == ["admin", "customer"]
    assert client.get(f"{API}/users/{address['user_id']}/addresses/{address['id']}",
                      headers=admin).json() == address

    old_kid = jwt.get_unverified_header(ann_tokens["access_token"])["kid"]
    assert_problem(client.post(f"{API}/admin/keys/rotate", headers=ann), 403)
    assert_problem(client.post(f"{API}/admin/keys/rotate"), 401)
    rotated = client.post(f"{API}/admin/keys/rotate", headers=admin)
    assert rotated.status_code == 200, rotated.text
    new_kid = rotated.json()["kid"]
    assert new_kid != old_kid

    # Tokens signed before the rotation still verify.
    assert client.get(f"{API}/me", headers=ann).status_code == 200
    # New tokens carry the new kid, whether from a login or a refresh.
    fresh = login(client).json()
    assert jwt.get_unverified_header(fresh["access_token"])["kid"] == new_kid
    refreshed = refresh(client, ann_tokens["refresh_token"]).json()
    assert jwt.get_unverified_header(refreshed["access_token"])["kid"] == new_kid
    assert client.get(f"{API}/me", headers=bearer(fresh["access_token"])).status_code == 200

    for path in ("/.well-known/jwks.json", f"{API}/.well-known/jwks.json"):
        jwks = client.get(path)
        assert jwks.headers["cache-control"].startswith("public")
        assert [k["kid"] for k in jwks.json()["keys"]] == [new_kid, old_kid]
    assert sql("SELECT count(*) FROM signing_keys WHERE active") == 1


def test_docs_health_and_openapi(client: TestClient) -> None:
    assert client.get("/health/ready").json()["checks"] == {"database": "ok"}
    spec = client.get(f"{API}/openapi.json").json()
    assert {f"{API}/register", f"{API}/token", f"{API}/me", f"{API}/me/addresses",
            "/.well-known/jwks.json", f"{API}/admin/keys/rotate"} <= set(spec["paths"])
    form = spec["paths"][f"{API}/token"]["post"]["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in form
