"""Helpers of the shop's integration tests: the app over a database, a signed-in customer,
and SQL run on the side."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from fastapi.testclient import TestClient
from legacy.app import create_app
from legacy.settings import Settings

APPROVE, DECLINE = "4242424242424242", "4000000000000002"
PASSWORD = "correct horse battery"
PROVIDER_TOKEN = "legacy-tests-provider-token"


def settings(database_url: str, provider_url: str, **extra: Any) -> Settings:
    # Cheap argon2 (as identity's e2e settings): the cost is the library's concern.
    return Settings(database_url=database_url, provider_url=provider_url,
                    provider_token=PROVIDER_TOKEN, provider_timeout_s=1.0,
                    argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1, **extra)


def client(database_url: str, provider_url: str) -> TestClient:
    return TestClient(create_app(settings(database_url, provider_url)),
                      raise_server_exceptions=False)


def sql(database_url: str, query: str, *args: Any) -> list[Any]:
    async def main() -> list[Any]:
        conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(main())


def sign_up(c: TestClient, email: str, *, admin_url: str | None = None) -> dict[str, str]:
    """Registers, logs in and adds an address; returns auth headers and the address id."""
    assert c.post("/shop/register", json={"email": email, "password": PASSWORD,
                                          "name": "Test Customer"}).status_code == 201
    if admin_url:
        sql(admin_url, "UPDATE customers SET is_admin = true WHERE email = $1", email)
    r = c.post("/shop/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    auth = {"Authorization": f"Bearer {r.json()['token']}"}
    r = c.post("/shop/addresses", headers=auth, json={
        "recipient": "Test Customer", "line1": "1 Test-ro", "city": "Seoul",
        "postal_code": "04100"})
    assert r.status_code == 201, r.text
    return {**auth, "address_id": str(r.json()["id"])}


def stocked_product(database_url: str, *, on_hand: int, price: str = "15000",
                    name: str = "Pan") -> int:
    rows = sql(database_url, "INSERT INTO categories (name) VALUES ('cat-' || gen_random_uuid()) "
               "RETURNING id")
    pid = sql(database_url, "INSERT INTO products (sku, name, category_id, price) VALUES "
              "('sku-' || gen_random_uuid(), $3, $1, $2::numeric) RETURNING id",
              rows[0]["id"], price, name)[0]["id"]
    sql(database_url, "INSERT INTO stock (product_id, on_hand) VALUES ($1, $2)", pid, on_hand)
    return int(pid)


def orders_of(database_url: str, email: str) -> int:
    return int(sql(database_url, "SELECT count(*) FROM orders o JOIN customers c ON "
                                 "c.id = o.customer_id WHERE c.email = $1", email)[0][0])
