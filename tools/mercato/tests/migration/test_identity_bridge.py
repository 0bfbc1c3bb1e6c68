"""The identity bridge with the real pieces (ADR 0032): identity and the monolith in their own
processes on an embedded PostgreSQL, the ACL between them with its own signed service
identity, the monolith trusting identity's keys.

- A customer signs up and in through the ACL (served by the services) and the monolith then
  serves their legacy-only paths (order history) with the services' token.
- A legacy session reaching the ACL for a path served by the services is checked by the
  monolith, exchanged at identity (once, then cached), and /shop/me and /shop/addresses
  answer from identity; shadowed, both sides agree; signing out ends the legacy session.
- Nobody but the ACL gets a token exchanged.

The customer data sync (another piece of issue 15) is not used here: where a customer must
exist on both sides, the test registers the same email and password on both, and points
the monolith's ``services_id`` at identity's account (and address), which is what the sync
leaves for a record born in the services.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from acl_standins import serve
from chassis.registry_keys import new_key_pair
from chassis.service_identity import CallerSigner
from legacy.migrate import upgrade_to_head
from mercato.migration.acl import Acl
from mercato.migration.guard import parse_acl_metrics
from mercato.migration.routes import CAPABILITY, PRIMARY, SHADOW
from mercato.runtime.paths import free_port
from mercato.testing.infra import serving

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
ACL_KEY, ACL_PUBLIC = new_key_pair()
ORDERS_KEY, _ = new_key_pair()  # a service identity identity does not trust
EXCHANGE = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token_type": "urn:mercato:params:oauth:token-type:account-id"}


@dataclass
class Sides:
    identity: str
    legacy: str
    legacy_db: str


@pytest.fixture(scope="module")
def sides(pg_server: Any) -> Iterator[Sides]:
    identity_db, legacy_db = pg_server.create_database(), pg_server.create_database()
    upgrade_to_head(legacy_db)
    iport, lport = free_port(), free_port()
    identity_env = {
        **os.environ, "IDENTITY_DATABASE_URL": identity_db, "IDENTITY_NATS_URL": "",
        "IDENTITY_PORT": str(iport), "IDENTITY_INSTANCE_ID": "identity-bridge",
        "IDENTITY_ENVIRONMENT": "test", "IDENTITY_SIGNING_KEY_SECRET": "a test-only secret",
        "IDENTITY_ARGON2_TIME_COST": "1", "IDENTITY_ARGON2_MEMORY_COST_KIB": "8",
        "IDENTITY_ARGON2_PARALLELISM": "1", "IDENTITY_OTLP_ENDPOINT": "",
        # As the supervisor lists it with --with legacy: the ACL is a trusted caller.
        "IDENTITY_REGISTRY_TRUSTED_KEYS": json.dumps({"acl": ACL_PUBLIC})}
    identity = f"http://127.0.0.1:{iport}"
    legacy_env = {**os.environ, "LEGACY_DATABASE_URL": legacy_db, "LEGACY_PORT": str(lport),
                  "LEGACY_OTLP_ENDPOINT": "", "LEGACY_ARGON2_TIME_COST": "1",
                  "LEGACY_ARGON2_MEMORY_KIB": "8192", "LEGACY_ARGON2_PARALLELISM": "1",
                  "LEGACY_JWKS_URL": f"{identity}/.well-known/jwks.json"}
    with serving([sys.executable, "-m", "identity"], identity_env,
                 f"{identity}/health/ready", timeout=90), \
            serving([sys.executable, "-m", "legacy"], legacy_env,
                    f"http://127.0.0.1:{lport}/health/ready", timeout=60):
        yield Sides(identity, f"http://127.0.0.1:{lport}", legacy_db)


@dataclass
class Rig:
    sides: Sides
    acl: Acl
    url: str
    http: aiohttp.ClientSession

    async def acl_call(self, method: str, path: str, *, primary: str = "services",
                       shadow: bool = False, token: str | None = None,
                       cookie: str | None = None, body: Any = None) -> tuple[int, Any,
                                                                          aiohttp.ClientResponse]:
        headers = {PRIMARY: primary, SHADOW: "1" if shadow else "0", CAPABILITY: "identity"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        if cookie:
            headers["cookie"] = f"legacy_session={cookie}"
        async with self.http.request(method, self.url + path, headers=headers,
                                     json=body) as resp:
            raw = await resp.read()
            return resp.status, json.loads(raw) if raw else None, resp

    async def legacy_call(self, method: str, path: str, *, token: str | None = None,
                          cookie: str | None = None, body: Any = None) -> tuple[int, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        if cookie:
            headers["cookie"] = f"legacy_session={cookie}"
        async with self.http.request(method, self.sides.legacy + path, headers=headers,
                                     json=body) as resp:
            raw = await resp.read()
            return resp.status, json.loads(raw) if raw else None

    async def identity_call(self, method: str, path: str, *, token: str | None = None,
                            **kw: Any) -> tuple[int, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        headers.update(kw.pop("headers", {}))
        async with self.http.request(method, self.sides.identity + path, headers=headers,
                                     **kw) as resp:
            return resp.status, await resp.json(content_type=None)

    async def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.sides.legacy_db.replace("+asyncpg", ""))
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def settled(self) -> None:
        while self.acl.shadows:
            await asyncio.gather(*self.acl.shadows)

    async def counters(self) -> dict[tuple[str, ...], float]:
        async with self.http.get(self.url + "/metrics") as resp:
            return parse_acl_metrics(await resp.text())

    async def exchanges(self, outcome: str) -> float:
        async with self.http.get(self.url + "/metrics") as resp:
            for line in (await resp.text()).splitlines():
                if line.startswith(f'acl_token_exchanges_total{{outcome="{outcome}"}}'):
                    return float(line.split()[-1])
        return 0.0


@pytest.fixture
async def rig(sides: Sides) -> AsyncIterator[Rig]:
    acl = Acl(legacy_url=sides.legacy, services_url=sides.identity,
              signer=CallerSigner("acl", ACL_KEY))
    async with serve(acl.app()) as url, aiohttp.ClientSession() as http:
        yield Rig(sides, acl, url, http)


def _email(name: str) -> str:
    return f"{name}-{os.urandom(4).hex()}@example.com"


async def test_signed_in_by_the_services_served_by_the_monolith(rig: Rig) -> None:
    email = _email("ann")
    # Sign-up and sign-in through the ACL: the account is born in the services.
    status, created, _ = await rig.acl_call("POST", "/shop/register", body={
        "email": email, "password": PASSWORD, "name": "Ann"})
    assert status == 201, created
    assert created["id"] is None  # no legacy id until the sync writes the account over
    account = (await rig.identity_call("POST", "/api/identity/token", data={
        "grant_type": "password", "username": email, "password": PASSWORD}))[1]
    status, me = await rig.identity_call("GET", "/api/identity/me",
                                         token=account["access_token"])
    # What the customer sync leaves in the monolith for an account born in the services.
    assert (await rig.legacy_call("POST", "/shop/register", body={
        "email": email, "password": PASSWORD, "name": "Ann"}))[0] == 201
    await rig.sql("UPDATE customers SET services_id = $1::uuid WHERE email = $2", me["id"],
                  email)

    status, login, resp = await rig.acl_call("POST", "/shop/login", body={
        "email": email, "password": PASSWORD})
    assert status == 200, login
    assert set(login) == {"token", "token_type", "expires_in"} and login["expires_in"] == 900
    token = login["token"]
    assert resp.cookies["legacy_session"].value == token
    assert resp.cookies["legacy_session"]["path"] == "/shop"

    # The monolith serves this customer's legacy-only paths with the services' token,
    # sent as a bearer or as the cookie the translated login set.
    status, orders = await rig.legacy_call("GET", "/shop/orders", token=token)
    assert status == 200 and orders["items"] == [], orders
    assert (await rig.legacy_call("GET", "/shop/orders", cookie=token))[0] == 200
    status, legacy_me = await rig.legacy_call("GET", "/shop/me", token=token)
    assert status == 200 and legacy_me["services_id"] == me["id"]

    # The ACL passes the JWT on as it is: /shop/me and addresses from identity.
    status, acl_me, _ = await rig.acl_call("GET", "/shop/me", token=token)
    assert (status, acl_me) == (200, {"id": None, "email": email, "name": "Ann",
                                      "is_admin": False, "services_id": me["id"]})
    status, added, _ = await rig.acl_call("POST", "/shop/addresses", token=token, body={
        "recipient": "Ann", "line1": "1 Test-ro", "city": "Seoul", "postal_code": "04100"})
    assert status == 201 and added["recipient"] == "Ann" and added["country"] == "KR", added
    assert await rig.exchanges("exchanged") == 0

    # Errors as the monolith gives them.
    assert (await rig.acl_call("POST", "/shop/login", body={
        "email": email, "password": "wrong password"}))[0] == 401
    assert (await rig.acl_call("POST", "/shop/register", body={
        "email": email, "password": PASSWORD, "name": "Ann"}))[0] == 409
    assert (await rig.acl_call("POST", "/shop/register", body={"email": email}))[0] == 422
    assert (await rig.acl_call("GET", "/shop/me", token="a.b.c"))[0] == 401
    assert (await rig.legacy_call("GET", "/shop/orders", token=token[:-3] + "AAA"))[0] == 401
    assert (await rig.acl_call("POST", "/shop/logout", token=token))[0] == 204


async def test_a_legacy_session_is_exchanged_and_answered_by_the_services(rig: Rig) -> None:
    email = _email("bo")
    assert (await rig.legacy_call("POST", "/shop/register", body={
        "email": email, "password": PASSWORD, "name": "Bo"}))[0] == 201
    session = (await rig.legacy_call("POST", "/shop/login", body={
        "email": email, "password": PASSWORD}))[1]["token"]
    address = {"recipient": "Bo", "line1": "2 Test-ro", "city": "Busan",
               "postal_code": "48000"}
    status, legacy_address = await rig.legacy_call("POST", "/shop/addresses", token=session,
                                                   body=address)
    assert status == 201
    # The identity side's copy (the sync's work): same account, same address, paired ids.
    assert (await rig.identity_call("POST", "/api/identity/register", json={
        "email": email, "password": PASSWORD, "name": "Bo"}))[0] == 201
    access = (await rig.identity_call("POST", "/api/identity/token", data={
        "grant_type": "password", "username": email, "password": PASSWORD}))[1]["access_token"]
    account = (await rig.identity_call("GET", "/api/identity/me", token=access))[1]["id"]
    status, copy = await rig.identity_call("POST", "/api/identity/me/addresses", token=access,
                                           json={"name": "Bo", "line1": "2 Test-ro",
                                                 "city": "Busan", "postal_code": "48000",
                                                 "country": "KR"})
    assert status == 201
    await rig.sql("UPDATE customers SET services_id = $1::uuid WHERE email = $2", account,
                  email)
    await rig.sql("UPDATE addresses SET services_id = $1::uuid WHERE id = $2", copy["id"],
                  legacy_address["id"])

    # Served by the services, with the legacy session: exchanged once, then cached.
    status, me, _ = await rig.acl_call("GET", "/shop/me", token=session)
    assert status == 200, me
    assert (me["services_id"], me["email"], me["name"]) == (account, email, "Bo")
    status, listed, _ = await rig.acl_call("GET", "/shop/addresses", cookie=session)
    assert status == 200
    assert [(a["services_id"], a["city"]) for a in listed] == [(copy["id"], "Busan")]
    assert await rig.exchanges("exchanged") == 1
    assert await rig.exchanges("cached") == 1

    # Shadowed both ways, with either kind of token: the two sides agree.
    for primary in ("services", "legacy"):
        for path in ("/shop/me", "/shop/addresses"):
            status, _, _ = await rig.acl_call("GET", path, primary=primary, shadow=True,
                                              token=session)
            assert status == 200
    await rig.settled()
    counters = await rig.counters()
    assert counters[("acl_shadow_comparisons_total", "identity", "/shop/me")] == 2
    assert counters[("acl_shadow_comparisons_total", "identity", "/shop/addresses")] == 2
    assert rig.acl.mismatches.recent() == [], rig.acl.mismatches.recent()
    # A real difference is a mismatch: the address renamed on one side only.
    await rig.sql("UPDATE addresses SET city = 'Daegu' WHERE id = $1", legacy_address["id"])
    await rig.acl_call("GET", "/shop/addresses", shadow=True, token=session)
    await rig.settled()
    assert [m["path"] for m in rig.acl.mismatches.recent()] == ["/shop/addresses"]

    # Signing out through the ACL ends the session where it lives, the monolith.
    assert (await rig.acl_call("POST", "/shop/logout", token=session))[0] == 204
    assert (await rig.legacy_call("GET", "/shop/orders", token=session))[0] == 401
    assert (await rig.acl_call("GET", "/shop/me", token=session))[0] == 401


async def test_a_customer_missing_on_the_services_is_not_signed_out(rig: Rig) -> None:
    email = _email("cy")
    assert (await rig.legacy_call("POST", "/shop/register", body={
        "email": email, "password": PASSWORD, "name": "Cy"}))[0] == 201
    session = (await rig.legacy_call("POST", "/shop/login", body={
        "email": email, "password": PASSWORD}))[1]["token"]
    status, problem, resp = await rig.acl_call("GET", "/shop/me", token=session)
    assert status == 503 and resp.headers["retry-after"], problem
    assert await rig.exchanges("unknown") == 1
    assert (await rig.acl_call("GET", "/shop/me", token="not-a-session"))[0] == 401
    assert (await rig.acl_call("GET", "/shop/me"))[0] == 401


async def test_only_the_acl_gets_a_token_exchanged(rig: Rig) -> None:
    email = _email("di")
    assert (await rig.identity_call("POST", "/api/identity/register", json={
        "email": email, "password": PASSWORD, "name": "Di"}))[0] == 201
    access = (await rig.identity_call("POST", "/api/identity/token", data={
        "grant_type": "password", "username": email, "password": PASSWORD}))[1]["access_token"]
    account = (await rig.identity_call("GET", "/api/identity/me", token=access))[1]["id"]
    form = {**EXCHANGE, "subject_token": account}
    callers = [{}, {"Mercato-Caller": "acl"},
               {"Mercato-Caller": CallerSigner("orders", ORDERS_KEY).token_for("identity")},
               {"Mercato-Caller": CallerSigner("acl", ORDERS_KEY).token_for("identity")},
               {"Mercato-Caller": CallerSigner("acl", ACL_KEY).token_for("catalog")},
               {"authorization": f"Bearer {access}"}]
    for headers in callers:
        status, body = await rig.identity_call("POST", "/api/identity/exchange", data=form,
                                               headers=headers)
        assert status == 403, (headers, body)
    status, body = await rig.identity_call(
        "POST", "/api/identity/exchange", data=form,
        headers={"Mercato-Caller": CallerSigner("acl", ACL_KEY).token_for("identity")})
    assert status == 200 and "refresh_token" not in body and body["expires_in"] == 300
    # The exchanged token is good at the monolith too, once it knows the account.
    assert (await rig.legacy_call("POST", "/shop/register", body={
        "email": email, "password": PASSWORD, "name": "Di"}))[0] == 201
    await rig.sql("UPDATE customers SET services_id = $1::uuid WHERE email = $2", account,
                  email)
    assert (await rig.legacy_call("GET", "/shop/orders", token=body["access_token"]))[0] == 200
