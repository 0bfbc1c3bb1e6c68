"""The monolith's side: its product rows read as records and written back, in the sync's
transaction, tagged with ``legacy.origin`` so the trigger marks the outbox rows they make
and the sync does not send its own writes back (ADR 0026, 0029)."""

from __future__ import annotations

import asyncpg

from mercato.migration.sync.records import Record, price_text

ORIGIN = "mercato-sync"

_READ = ("SELECT p.id, p.sku, p.name, p.description, p.category_id, c.name AS category_name, "
         "p.price, p.currency, p.active FROM products p JOIN categories c "
         "ON c.id = p.category_id WHERE p.id = $1")


async def mark_origin(conn: asyncpg.Connection) -> None:
    """For the current transaction only."""
    await conn.execute("SELECT set_config('legacy.origin', $1, true)", ORIGIN)


async def read_row(conn: asyncpg.Connection, legacy_id: int, *,
                   for_update: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(_READ + (" FOR UPDATE OF p" if for_update else ""), legacy_id)


def record_of(row: asyncpg.Record, slug: str) -> Record:
    return Record(sku=row["sku"], name=row["name"], description=row["description"],
                  category=slug, price=price_text(row["price"]),
                  currency=row["currency"].strip(), active=row["active"])


async def update(conn: asyncpg.Connection, legacy_id: int, record: Record,
                 category_id: int) -> None:
    await conn.execute(
        "UPDATE products SET name = $2, description = $3, category_id = $4, "
        "price = $5::numeric, currency = $6, active = $7, updated_at = now() WHERE id = $1",
        legacy_id, record.name, record.description, category_id, record.price,
        record.currency, record.active)


async def insert(conn: asyncpg.Connection, record: Record, category_id: int) -> int:
    """A product born in the services; the monolith's back office creates its stock row
    with it, and so does this (the stock itself is not the catalog's to sync)."""
    legacy_id = int(await conn.fetchval(
        "INSERT INTO products (sku, name, description, category_id, price, currency, active) "
        "VALUES ($1, $2, $3, $4, $5::numeric, $6, $7) RETURNING id", record.sku, record.name,
        record.description, category_id, record.price, record.currency, record.active))
    await conn.execute("INSERT INTO stock (product_id, on_hand) VALUES ($1, 0) "
                       "ON CONFLICT (product_id) DO NOTHING", legacy_id)
    return legacy_id


async def category_id_named(conn: asyncpg.Connection, name: str) -> int:
    found = await conn.fetchval("SELECT id FROM categories WHERE name = $1", name)
    if found is not None:
        return int(found)
    return int(await conn.fetchval(
        "INSERT INTO categories (name) VALUES ($1) ON CONFLICT (name) DO UPDATE "
        "SET name = excluded.name RETURNING id", name))
