"""The outbox triggers (one row per committed change, none for a rolled-back one) and
checkout under concurrency (stock never oversold)."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest
from legacy.domain import Problem
from legacy.provider import PaymentProvider
from legacy_kit import APPROVE, PROVIDER_TOKEN, sql, stocked_product
from sqlalchemy.ext.asyncio import create_async_engine

from legacy import shop

pytestmark = pytest.mark.integration


def outbox(url: str) -> list[dict[str, object]]:
    return [dict(r) for r in sql(url, "SELECT table_name, op, row_id, changed, txid, origin "
                                      "FROM legacy_outbox ORDER BY id")]


def test_a_committed_change_writes_one_row_and_a_rolled_back_one_none(database_url: str) -> None:
    pid = stocked_product(database_url, on_hand=3, price="5000")
    before = len(outbox(database_url))

    async def main() -> None:
        conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
        try:
            async with conn.transaction():
                await conn.execute("UPDATE products SET price = 6000 WHERE id = $1", pid)
            with pytest.raises(RuntimeError):
                async with conn.transaction():
                    await conn.execute("UPDATE products SET price = 7000 WHERE id = $1", pid)
                    raise RuntimeError("roll back")
            # No value changed: nothing for a follower to learn.
            await conn.execute("UPDATE products SET price = 6000, updated_at = now() "
                               "WHERE id = $1", pid)
            await conn.execute("SET legacy.origin = 'sync'")
            await conn.execute("UPDATE stock SET on_hand = 2 WHERE product_id = $1", pid)
        finally:
            await conn.close()

    asyncio.run(main())
    rows = outbox(database_url)[before:]
    assert [(r["table_name"], r["op"], r["row_id"]) for r in rows] == [
        ("products", "UPDATE", str(pid)), ("stock", "UPDATE", str(pid))]
    assert json.loads(rows[0]["changed"]) == {"price": 6000.00}  # type: ignore[arg-type]
    assert rows[0]["origin"] == "" and rows[1]["origin"] == "sync"
    assert json.loads(rows[1]["changed"]) == {"on_hand": 2}  # type: ignore[arg-type]
    assert rows[0]["txid"] != rows[1]["txid"]


def test_inserts_and_deletes_are_recorded_without_secrets(database_url: str) -> None:
    sql(database_url, "INSERT INTO customers (email, name, password_hash) "
                      "VALUES ('o@example.com', 'O', 'secret-hash')")
    sql(database_url, "DELETE FROM customers WHERE email = 'o@example.com'")
    rows = [r for r in outbox(database_url) if r["table_name"] == "customers"]
    assert [r["op"] for r in rows] == ["INSERT", "DELETE"]
    for r in rows:
        changed = json.loads(r["changed"])  # type: ignore[arg-type]
        assert changed["email"] == "o@example.com" and "password_hash" not in changed


def test_concurrent_checkouts_never_oversell(database_url: str, provider_url: str) -> None:
    pid = stocked_product(database_url, on_hand=3, price="1000")
    sql(database_url, "INSERT INTO customers (email, name, password_hash) "
                      "SELECT 'c' || i || '@example.com', 'C', 'x' FROM generate_series(1, 8) i")
    sql(database_url, "INSERT INTO addresses (customer_id, recipient, line1, city, postal_code) "
                      "SELECT id, 'C', 'l', 'Seoul', '04100' FROM customers")
    people = sql(database_url, "SELECT c.id, c.email, a.id AS address_id FROM customers c "
                               "JOIN addresses a ON a.customer_id = c.id ORDER BY c.id")

    async def main() -> list[object]:
        engine = create_async_engine(database_url, pool_size=10)
        provider = PaymentProvider(provider_url, PROVIDER_TOKEN, 5.0)
        try:
            return await asyncio.gather(*(shop.checkout(
                engine, provider, shop.Customer(p["id"], p["email"], "C", False),
                address_id=p["address_id"], card_number=APPROVE,
                idempotency_key=str(uuid.uuid4()), items=[(pid, 1)], currency="KRW")
                for p in people), return_exceptions=True)
        finally:
            await provider.close()
            await engine.dispose()

    results = asyncio.run(main())
    refused = [r for r in results if isinstance(r, Problem)]
    assert len(results) - len(refused) == 3, results
    assert {r.status for r in refused} == {409}
    assert sql(database_url, "SELECT on_hand FROM stock WHERE product_id = $1", pid)[0][0] == 0
    assert sql(database_url, "SELECT sum(quantity) FROM order_lines")[0][0] == 3
    # Each paid order's stock change reached the outbox with its order, in its transaction.
    rows = outbox(database_url)
    order_tx = {r["txid"] for r in rows if r["table_name"] == "orders"}
    stock_tx = {r["txid"] for r in rows if r["table_name"] == "stock" and r["op"] == "UPDATE"}
    assert len(stock_tx) == 3 and stock_tx <= order_tx


def test_customers_and_addresses_carry_the_services_id_and_addresses_are_followed(
        database_url: str) -> None:
    [c] = sql(database_url, "INSERT INTO customers (email, name, password_hash) "
                            "VALUES ('ids@example.com', 'I', 'h') RETURNING id, services_id")
    # The migration's id scheme (mercato.migration.ids): prefix, table code 3, the integer.
    assert str(c["services_id"]) == f"6c656761-0003-8000-8000-{c['id']:012x}"
    born_in_services = uuid.uuid4()
    [s] = sql(database_url, "INSERT INTO customers (email, name, password_hash, services_id) "
                            "VALUES ('svc@example.com', 'S', 'h', $1) RETURNING services_id",
              born_in_services)
    assert s["services_id"] == born_in_services  # a synced account keeps its own
    [a] = sql(database_url, "INSERT INTO addresses (customer_id, recipient, line1, city, "
                            "postal_code) VALUES ($1, 'I', 'l', 'c', '1') RETURNING id, "
                            "services_id", c["id"])
    assert str(a["services_id"]) == f"6c656761-0005-8000-8000-{a['id']:012x}"
    rows = [r for r in outbox(database_url) if r["table_name"] == "addresses"]
    assert [(r["op"], r["row_id"]) for r in rows] == [("INSERT", str(a["id"]))]
    assert json.loads(rows[0]["changed"])["services_id"] == str(a["services_id"])


def test_a_password_changed_alone_is_recorded_without_the_hash(database_url: str) -> None:
    sql(database_url, "INSERT INTO customers (email, name, password_hash) "
                      "VALUES ('p@example.com', 'P', 'old-secret-hash')")
    sql(database_url, "UPDATE customers SET password_hash = 'new-secret-hash' "
                      "WHERE email = 'p@example.com'")
    sql(database_url, "UPDATE customers SET password_hash = 'new-secret-hash', name = 'Q' "
                      "WHERE email = 'p@example.com'")  # the same hash: not a change of it
    rows = [r for r in outbox(database_url) if r["table_name"] == "customers"]
    assert [(r["op"], json.loads(r["changed"])) for r in rows[1:]] == [  # type: ignore[arg-type]
        ("UPDATE", {"password_hash_changed": True}), ("UPDATE", {"name": "Q"})]
    assert not any("secret-hash" in str(r["changed"]) for r in rows)
