"""Identity moved through the edge, with the runtime's own wiring (ADR 0032): `mercato up
--with legacy` gives the monolith identity's keys and the ACL its signed identity.

A customer of the monolith, copied to identity (the first test registers the same email and
password on both sides and points the monolith's ``services_id`` at identity's account, what
the sync leaves; the last runs the sync itself, ADR 0031), keeps their legacy
session after identity is shifted: the ACL exchanges it and /shop/me is answered by the
services; signing in again through the edge gives a services token, which the monolith
accepts for the order history it still serves. Rolled back, everything is the monolith's
again, and both tokens still work there.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from edge_helpers import Platform, mercato, running_platform, scratch_home, wait_until
from mercato.migration.routes import SERVED_BY
from mercato.runtime.paths import Home
from mercato.runtime.postgres import Postgres

pytestmark = pytest.mark.e2e

PASSWORD = "e2e-password-1"


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    home = scratch_home("mercato-identity-bridge-e2e-")
    with running_platform(home, "--service", "catalog", "--service", "identity",
                          "--with", "legacy", "--no-telemetry") as p:
        with p.client() as c:
            wait_until(lambda: c.get("/shop/categories").status_code == 200, 60,
                       "the monolith through the edge")
        yield p


def legacy_sql(p: Platform, query: str, *args: Any) -> None:
    async def run() -> None:
        home = Home(p.home)
        url = Postgres(home, home.ports().postgres).service_database_url("legacy")
        assert url is not None
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            await conn.execute(query, *args)
        finally:
            await conn.close()

    asyncio.run(run())


def migrate(p: Platform, *args: str) -> None:
    done = mercato(p.home, "migrate", *args, timeout=60, check=False)
    assert done.returncode == 0, (done.stdout, done.stderr)


def test_a_customer_keeps_both_kinds_of_token_across_the_shift(platform: Platform) -> None:
    email = f"bridge-{uuid.uuid4().hex[:8]}@example.com"
    with platform.client() as c:
        # A customer of the monolith, with a session and an order history (empty).
        assert c.post("/shop/register", json={"email": email, "password": PASSWORD,
                                               "name": "Bo"}).status_code == 201
        r = c.post("/shop/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200 and r.headers[SERVED_BY] == "legacy", r.text
        session = {"Authorization": f"Bearer {r.json()['token']}"}
        # Identity's copy of the account.
        assert c.post("/api/identity/register", json={"email": email, "password": PASSWORD,
                                                      "name": "Bo"}).status_code == 201
        access = c.post("/api/identity/token", data={
            "grant_type": "password", "username": email,
            "password": PASSWORD}).json()["access_token"]
        account = c.get("/api/identity/me",
                        headers={"Authorization": f"Bearer {access}"}).json()["id"]
        legacy_sql(platform, "UPDATE customers SET services_id = $1::uuid WHERE email = $2",
                   account, email)

        migrate(platform, "shift", "identity", "--percent", "100")
        # The legacy session, exchanged by the ACL: answered by the services.
        me = c.get("/shop/me", headers=session)
        assert me.status_code == 200, me.text
        assert me.headers[SERVED_BY] == "services"
        assert (me.json()["services_id"], me.json()["email"]) == (account, email)
        # Signing in now gives the services' token; the monolith serves the history with it.
        r = c.post("/shop/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200 and r.headers[SERVED_BY] == "services", r.text
        token = {"Authorization": f"Bearer {r.json()['token']}"}
        assert r.json()["token"].count(".") == 2 and "legacy_session" in r.cookies
        orders = c.get("/shop/orders", headers=token)
        assert orders.status_code == 200 and orders.headers[SERVED_BY] == "legacy", orders.text
        assert c.get("/shop/me", headers=token).json()["services_id"] == account
        # Nobody but the ACL has an exchange.
        refused = c.post("/api/identity/exchange", data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": account,
            "subject_token_type": "urn:mercato:params:oauth:token-type:account-id"})
        assert refused.status_code == 403, refused.text

        migrate(platform, "rollback", "identity")
        me = c.get("/shop/me", headers=token)
        assert me.status_code == 200 and me.headers[SERVED_BY] == "legacy", me.text
        assert me.json()["services_id"] == account
        assert c.get("/shop/me", headers=session).status_code == 200


def test_the_sync_brings_customers_over_both_ways(platform: Platform) -> None:
    """The customer sync with the runtime's wiring (ADR 0031): backfilled, then followed;
    a monolith customer signs in on identity with the same password, and an account made in
    identity signs in on the monolith."""
    migrate(platform, "backfill", "identity")
    shop_email = f"sync-{uuid.uuid4().hex[:8]}@example.com"
    services_email = f"sync-{uuid.uuid4().hex[:8]}@example.com"
    with platform.client() as c:
        assert c.post("/shop/register", json={"email": shop_email, "password": PASSWORD,
                                               "name": "Shop Born"}).status_code == 201

        def signs_in_on_identity() -> bool:
            return c.post("/api/identity/token", data={
                "grant_type": "password", "username": shop_email,
                "password": PASSWORD}).status_code == 200

        wait_until(signs_in_on_identity, 60, "the monolith's customer signing in on identity")
        made = c.post("/api/identity/register", json={
            "email": services_email, "password": PASSWORD, "name": "Services Born"})
        assert made.status_code == 201, made.text

        def signs_in_on_the_monolith() -> Any:
            r = c.post("/shop/login", json={"email": services_email, "password": PASSWORD})
            return r.status_code == 200 and r

        r = wait_until(signs_in_on_the_monolith, 60, "identity's account in the monolith")
        me = c.get("/shop/me", headers={"Authorization": f"Bearer {r.json()['token']}"})
        assert me.json()["services_id"] == made.json()["id"]
    status = mercato(platform.home, "migrate", "status", "--json", timeout=60)
    row = next(r for r in json.loads(status.stdout)["capabilities"]
               if r["capability"] == "identity")
    assert row["sync"]["armed"] is True and row["sync"]["linked"] >= 3
