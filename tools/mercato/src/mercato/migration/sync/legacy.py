"""The monolith's side: its product, customer and address rows read as records and written
back, in the sync's transaction, tagged with ``legacy.origin`` so the trigger marks the
outbox rows they make and the sync does not send its own writes back (ADR 0026, 0029,
0031)."""

from __future__ import annotations

import uuid

import asyncpg

from mercato.migration.sync.records import Account, Address, Record, price_text

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


# -- customers and addresses (ADR 0031) ------------------------------------------------------

_CUSTOMER = "SELECT id, email, name, password_hash, services_id FROM customers WHERE id = $1"
_ADDRESS = ("SELECT a.id, a.recipient, a.line1, a.city, a.postal_code, a.country, "
            "a.services_id, c.services_id AS owner FROM addresses a JOIN customers c "
            "ON c.id = a.customer_id WHERE a.id = $1")


async def read_customer(conn: asyncpg.Connection, legacy_id: int) -> Account | None:
    row = await conn.fetchrow(_CUSTOMER + " FOR UPDATE", legacy_id)
    if row is None:
        return None
    # Lower-cased as identity keeps it; the monolith finds its customers by lower(email).
    return Account(email=row["email"].strip().lower(), name=row["name"],
                   password_hash=row["password_hash"])


async def read_address(conn: asyncpg.Connection, legacy_id: int) -> Address | None:
    row = await conn.fetchrow(_ADDRESS + " FOR UPDATE OF a", legacy_id)
    if row is None:
        return None
    return Address(owner=str(row["owner"]), recipient=row["recipient"], line1=row["line1"],
                   city=row["city"], postal_code=row["postal_code"],
                   country=row["country"].strip())


async def id_of(conn: asyncpg.Connection, table: str, services_id: uuid.UUID) -> int | None:
    """The monolith's id of the row the services know as ``services_id`` (0003)."""
    # The table is one of two constants, never input.
    found = await conn.fetchval(f"SELECT id FROM {table} WHERE services_id = $1",  # noqa: S608
                                services_id)
    return None if found is None else int(found)


async def services_id_of(conn: asyncpg.Connection, table: str,
                         legacy_id: int) -> uuid.UUID | None:
    return await conn.fetchval(f"SELECT services_id FROM {table} WHERE id = $1",  # noqa: S608
                               legacy_id)


async def write_customer(conn: asyncpg.Connection, legacy_id: int | None,
                         services_id: uuid.UUID, record: Account) -> int:
    """Insert (an account born in the services, under its own UUID) or update. The email's
    unique index (on lower(email)) refuses an address another customer has."""
    try:
        if legacy_id is None:
            return int(await conn.fetchval(
                "INSERT INTO customers (email, name, password_hash, services_id) "
                "VALUES ($1, $2, $3, $4) RETURNING id", record.email, record.name,
                record.password_hash, services_id))
        await conn.execute(
            "UPDATE customers SET email = $2, name = $3, password_hash = $4, "
            "updated_at = now() WHERE id = $1", legacy_id, record.email, record.name,
            record.password_hash)
        return legacy_id
    except asyncpg.UniqueViolationError as exc:
        raise Refused(f"the monolith has another customer with email {record.email}") from exc


async def write_address(conn: asyncpg.Connection, legacy_id: int | None,
                        services_id: uuid.UUID, record: Address) -> int:
    if legacy_id is not None:
        await conn.execute(
            "UPDATE addresses SET recipient = $2, line1 = $3, city = $4, postal_code = $5, "
            "country = $6 WHERE id = $1", legacy_id, record.recipient, record.line1,
            record.city, record.postal_code, record.country)
        return legacy_id
    owner = await id_of(conn, "customers", uuid.UUID(record.owner))
    if owner is None:
        # Its account is not in the monolith yet (its own change is synced first): later.
        raise OwnerMissing(f"the monolith has no customer {record.owner} yet")
    return int(await conn.fetchval(
        "INSERT INTO addresses (customer_id, recipient, line1, city, postal_code, country, "
        "services_id) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id", owner,
        record.recipient, record.line1, record.city, record.postal_code, record.country,
        services_id))


class Refused(Exception):
    """The monolith's schema refuses the record (a constraint): retrying changes nothing."""


class OwnerMissing(Exception):
    """An address whose customer is not in the monolith yet: retried."""
