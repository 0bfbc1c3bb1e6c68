"""The migration sync's record endpoints (ADR 0031): accounts and addresses stated whole
under their ids, only by the ``sync`` service identity, idempotently, with the monolith's
argon2id hashes taken as they are."""

from __future__ import annotations

import json
import uuid
from typing import Any

from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from identity_http import API, PASSWORD, calling_as, login, register

# The monolith's hasher has other costs than identity's (the tests' cheapest ones): identity
# must verify the hash as it is, then upgrade it at the first sign-in.
LEGACY_HASH = PasswordHasher(time_cost=2, memory_cost=16, parallelism=2).hash(PASSWORD)
USER = uuid.UUID("6c656761-0003-8000-8000-000000000007")
ADDRESS = uuid.UUID("6c656761-0005-8000-8000-000000000011")


def sync() -> dict[str, str]:
    """The sync's Mercato-Caller header, minted now: one minted at import has expired by
    the time a long session reaches these tests."""
    return calling_as("sync")


def account(email: str = "kim@shop.test", name: str = "Kim",
            password_hash: str = LEGACY_HASH) -> dict[str, str]:
    return {"email": email, "name": name, "password_hash": password_hash}


def address(**fields: Any) -> dict[str, Any]:
    return {"name": "Kim Minji", "line1": "12 Sejong-daero", "city": "Seoul",
            "postal_code": "04524", "country": "KR", **fields}


def outbox(sql: Any) -> list[str]:
    return [t for t in (sql("SELECT string_agg(message_type, ',' ORDER BY id) FROM outbox")
                        or "").split(",") if t]


def test_only_the_sync_may_state_or_read_records(client: TestClient, sql: Any) -> None:
    for headers in ({}, calling_as("orders")):
        put = client.put(f"{API}/accounts/{USER}", json=account(), headers=headers)
        assert put.status_code == 403, put.text
        assert put.headers["content-type"] == "application/problem+json"
        assert client.get(f"{API}/accounts/{USER}", headers=headers).status_code == 403
        assert client.put(f"{API}/accounts/{USER}/addresses/{ADDRESS}", json=address(),
                          headers=headers).status_code == 403
    assert sql("SELECT count(*) FROM users") == 0


def test_a_legacy_account_signs_in_with_its_old_password(client: TestClient, sql: Any) -> None:
    put = client.put(f"{API}/accounts/{USER}", json=account(email="Kim@Shop.test"),
                     headers=sync())
    assert put.status_code == 201, put.text
    body = put.json()
    assert (body["id"], body["email"], body["version"]) == (str(USER), "kim@shop.test", 1)
    assert put.headers["ETag"] == f'W/"{USER.hex}-1"'
    assert outbox(sql) == ["AccountRegistered.v1"]
    # The hash never travels in an event.
    assert "argon2" not in sql("SELECT string_agg(convert_from(payload, 'UTF8'), '') "
                               "FROM outbox")

    assert login(client, username="kim@shop.test").status_code == 200
    # Signed in with the monolith's cost: upgraded to identity's, told as an update.
    got = client.get(f"{API}/accounts/{USER}", headers=sync())
    assert got.status_code == 200
    assert got.json()["password_hash"] != LEGACY_HASH
    assert got.json()["password_hash"].startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert got.json()["version"] == 2 and got.headers["ETag"] == f'W/"{USER.hex}-2"'
    assert outbox(sql) == ["AccountRegistered.v1", "AccountUpdated.v1"]
    assert login(client, username="kim@shop.test").status_code == 200


def test_stating_the_same_record_again_changes_nothing(client: TestClient, sql: Any) -> None:
    assert client.put(f"{API}/accounts/{USER}", json=account(), headers=sync()).status_code == 201
    again = client.put(f"{API}/accounts/{USER}", json=account(), headers=sync())
    assert again.status_code == 200 and again.json()["version"] == 1
    assert outbox(sql) == ["AccountRegistered.v1"]

    renamed = client.put(f"{API}/accounts/{USER}", json=account(name="Kim Minji"),
                         headers={**sync(), "If-Match": f'W/"{USER.hex}-1"'})
    assert renamed.status_code == 200 and renamed.json()["version"] == 2
    assert outbox(sql) == ["AccountRegistered.v1", "AccountUpdated.v1"]

    stale = client.put(f"{API}/accounts/{USER}", json=account(name="Other"),
                       headers={**sync(), "If-Match": f'W/"{USER.hex}-1"'})
    assert stale.status_code == 412
    assert sql("SELECT name FROM users") == "Kim Minji"


def test_bad_records_are_422_and_write_nothing(client: TestClient, sql: Any) -> None:
    bcrypt = "$2b$12$KIXQJ0m8Z8g5qvVQ0V1mUeq1m8XkTq5l9oGxJ1VwE2m3n4o5p6q7r"
    for body in (account(password_hash=bcrypt), account(password_hash="plain text"),
                 account(password_hash=LEGACY_HASH.replace("argon2id", "argon2i")),
                 account(email="not an email"), account(name=" "),
                 {"email": "kim@shop.test", "name": "Kim"}):
        resp = client.put(f"{API}/accounts/{USER}", json=body, headers=sync())
        assert resp.status_code == 422, (body, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
    assert client.put(f"{API}/accounts/not-a-uuid", json=account(),
                      headers=sync()).status_code == 422
    assert (sql("SELECT count(*) FROM users"), outbox(sql)) == (0, [])


def test_an_email_another_account_has_is_a_conflict(client: TestClient, sql: Any) -> None:
    assert register(client, email="kim@shop.test").status_code == 201
    resp = client.put(f"{API}/accounts/{USER}", json=account(), headers=sync())
    assert resp.status_code == 409
    assert sql("SELECT count(*) FROM users") == 1


def test_addresses_are_stated_under_their_ids(client: TestClient, sql: Any) -> None:
    path = f"{API}/accounts/{USER}/addresses/{ADDRESS}"
    assert client.put(path, json=address(), headers=sync()).status_code == 404  # no account
    assert client.put(f"{API}/accounts/{USER}", json=account(), headers=sync()).status_code == 201
    created = client.put(path, json=address(postal_code="ab 12"), headers=sync())
    assert created.status_code == 201, created.text
    assert created.json()["postal_code"] == "AB 12"
    again = client.put(path, json=address(postal_code="ab 12"), headers=sync())
    assert again.status_code == 200
    moved = client.put(path, json=address(city="Busan"), headers=sync())
    assert moved.status_code == 200 and moved.json()["city"] == "Busan"
    assert outbox(sql) == ["AccountRegistered.v1", "AddressAdded.v1", "AddressUpdated.v1"]
    # The whole address travels with its events: orders keeps it as a replica (ADR 0036).
    updated = json.loads(sql("SELECT convert_from(payload, 'UTF8') FROM outbox "
                             "WHERE message_type = 'AddressUpdated.v1'"))
    assert updated == {"user_id": str(USER), "address_id": str(ADDRESS), "name": "Kim Minji",
                       "line1": "12 Sejong-daero", "line2": None, "city": "Busan",
                       "postal_code": "04524", "country": "KR", "phone": None}
    assert client.put(path, json=address(country="XX"), headers=sync()).status_code == 422

    record = client.get(f"{API}/accounts/{USER}", headers=sync()).json()
    assert [(a["id"], a["city"]) for a in record["addresses"]] == [(str(ADDRESS), "Busan")]

    other = register(client, email="lee@shop.test").json()["id"]
    taken = client.put(f"{API}/accounts/{other}/addresses/{ADDRESS}", json=address(),
                       headers=sync())
    assert taken.status_code == 409
    assert client.get(f"{API}/accounts/{uuid.uuid4()}", headers=sync()).status_code == 404


def test_customers_own_changes_are_published(client: TestClient, sql: Any) -> None:
    user = register(client).json()["id"]
    token = login(client).json()["access_token"]
    added = client.post(f"{API}/me/addresses", json=address(),
                        headers={"Authorization": f"Bearer {token}"})
    assert added.status_code == 201
    assert outbox(sql) == ["AccountRegistered.v1", "AddressAdded.v1"]
    assert sql("SELECT count(*) FROM outbox WHERE subject = 'identity.events.address_added' "
               f"AND convert_from(payload, 'UTF8') LIKE '%{user}%'") == 1


def test_the_sync_pages_through_account_ids(client: TestClient) -> None:
    made = sorted(register(client, email=f"p{n}@shop.test").json()["id"] for n in range(3))
    first = client.get(f"{API}/accounts?limit=2", headers=sync())
    assert first.status_code == 200 and first.json()["ids"] == made[:2]
    rest = client.get(f"{API}/accounts?limit=2&after={made[1]}", headers=sync()).json()["ids"]
    assert rest == made[2:]
    assert client.get(f"{API}/accounts", headers=calling_as("orders")).status_code == 403
    assert client.get(f"{API}/accounts?limit=0", headers=sync()).status_code == 422


def test_a_customer_renames_themselves_and_it_is_published(client: TestClient,
                                                           sql: Any) -> None:
    register(client)
    auth = {"Authorization": f"Bearer {login(client).json()['access_token']}"}
    renamed = client.patch(f"{API}/me", json={"name": "Ann Lee"}, headers=auth)
    assert renamed.status_code == 200 and renamed.json()["name"] == "Ann Lee"
    assert client.patch(f"{API}/me", json={"name": "Ann Lee"}, headers=auth).status_code == 200
    assert outbox(sql) == ["AccountRegistered.v1", "AccountUpdated.v1"]
    assert client.patch(f"{API}/me", json={"name": "\n"}, headers=auth).status_code == 422
    assert client.patch(f"{API}/me", json={"name": "X"}).status_code == 401
