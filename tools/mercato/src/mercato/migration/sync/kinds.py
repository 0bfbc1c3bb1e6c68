"""The kinds of record the sync keeps equal, each as the engine reconciles it: how its two
ids are paired, how each side reads and writes it (ADR 0029: products; ADR 0031: accounts
and addresses). The engine holds what they share: the merge, the id map, conflicts,
idempotency and the origin tag."""

from __future__ import annotations

import uuid
from typing import Any, Generic, Protocol, TypeVar

import asyncpg

from mercato.migration import ids
from mercato.migration.sync import legacy
from mercato.migration.sync.accounts import Identity
from mercato.migration.sync.catalog import Catalog
from mercato.migration.sync.client import Rejected, Stored, Transient
from mercato.migration.sync.records import Account, Address, Record, Synced, slug_of
from mercato.migration.sync.store import ACCOUNTS, ADDRESSES, PRODUCTS, Links

T = TypeVar("T", bound=Synced)


class Kind(Protocol, Generic[T]):
    links: Links[T]
    capability: str  # whose metrics and status it counts in
    table: str  # the monolith's table (legacy_outbox.table_name)

    async def pair(self, conn: asyncpg.Connection, legacy_id: int | None,
                   services_id: uuid.UUID | None) -> tuple[int | None, uuid.UUID]:
        """Both ids of a record never synced before, from the one known."""
        ...

    async def read_legacy(self, conn: asyncpg.Connection, legacy_id: int) -> T | None:
        """The monolith's row as a record, locked until the sync's transaction ends."""
        ...

    async def read_services(self, services_id: uuid.UUID, known: T | None,
                            hint: Any) -> Stored[T] | None: ...

    async def put_services(self, services_id: uuid.UUID, record: T,
                           current: Stored[T] | None) -> Stored[T]: ...

    async def write_legacy(self, conn: asyncpg.Connection, legacy_id: int | None,
                           services_id: uuid.UUID, record: T) -> int:
        """Inserts (``legacy_id`` None) or updates the row; its id."""
        ...


class Products:
    links = PRODUCTS
    capability = "catalog"
    table = "products"

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def pair(self, conn: asyncpg.Connection, legacy_id: int | None,
                   services_id: uuid.UUID | None) -> tuple[int | None, uuid.UUID]:
        if legacy_id is not None:
            return legacy_id, ids.services_id("products", legacy_id)
        assert services_id is not None
        return ids.legacy_id("products", services_id), services_id

    async def read_legacy(self, conn: asyncpg.Connection, legacy_id: int) -> Record | None:
        row = await legacy.read_row(conn, legacy_id, for_update=True)
        if row is None:
            return None
        return legacy.record_of(row, await self.slug_of_legacy(conn, row["category_id"],
                                                               row["category_name"]))

    async def read_services(self, services_id: uuid.UUID, known: Record | None,
                            hint: Any) -> Stored[Record] | None:
        return await self.catalog.read(services_id)

    async def put_services(self, services_id: uuid.UUID, record: Record,
                           current: Stored[Record] | None) -> Stored[Record]:
        return await self.catalog.put(services_id, record,
                                      current.etag if current else None)

    async def write_legacy(self, conn: asyncpg.Connection, legacy_id: int | None,
                           services_id: uuid.UUID, record: Record) -> int:
        category_id = await self.legacy_category(conn, record.category)
        if legacy_id is None:
            return await legacy.insert(conn, record, category_id)
        await legacy.update(conn, legacy_id, record, category_id)
        return legacy_id

    async def slug_of_legacy(self, conn: asyncpg.Connection, category_id: int,
                             name: str) -> str:
        known = await conn.fetchval(
            "SELECT slug FROM mercato_sync.categories WHERE legacy_id = $1 ORDER BY slug "
            "LIMIT 1", category_id)
        if known is not None:
            return str(known)
        slug = slug_of(name, category_id)
        if slug not in await self.catalog.categories():
            # Under its derived id, so the ACL finds the monolith's category id in it.
            await self.catalog.put_category(ids.services_id("categories", category_id),
                                            slug, name)
        await conn.execute("INSERT INTO mercato_sync.categories (slug, legacy_id) "
                           "VALUES ($1, $2) ON CONFLICT (slug) DO NOTHING", slug, category_id)
        return slug

    async def legacy_category(self, conn: asyncpg.Connection, slug: str) -> int:
        known = await conn.fetchval(
            "SELECT legacy_id FROM mercato_sync.categories WHERE slug = $1", slug)
        if known is not None:
            return int(known)
        found = (await self.catalog.categories()).get(slug)
        if found is None:
            raise Rejected(f"the catalog has no category '{slug}'")
        category_id = ids.legacy_id("categories", found["id"])
        if category_id is None or await conn.fetchval(
                "SELECT id FROM categories WHERE id = $1", category_id) is None:
            category_id = await legacy.category_id_named(conn, found["name"])
        await conn.execute("INSERT INTO mercato_sync.categories (slug, legacy_id) "
                           "VALUES ($1, $2) ON CONFLICT (slug) DO NOTHING", slug, category_id)
        return category_id


class _People:
    """Customers and addresses: born on either side, each row carries its services id
    (legacy migration 0003), so the pair is read from the row, not derived."""

    table: str
    capability = "identity"

    async def pair(self, conn: asyncpg.Connection, legacy_id: int | None,
                   services_id: uuid.UUID | None) -> tuple[int | None, uuid.UUID]:
        if legacy_id is not None:
            found = await legacy.services_id_of(conn, self.table, legacy_id)
            # A row gone since: the id its scheme gave it (a services-born one has a link).
            return legacy_id, found or ids.services_id(self.table, legacy_id)
        assert services_id is not None
        return await legacy.id_of(conn, self.table, services_id), services_id


class Accounts(_People):
    links = ACCOUNTS
    table = "customers"

    def __init__(self, identity: Identity) -> None:
        self.identity = identity

    async def read_legacy(self, conn: asyncpg.Connection, legacy_id: int) -> Account | None:
        return await legacy.read_customer(conn, legacy_id)

    async def read_services(self, services_id: uuid.UUID, known: Account | None,
                            hint: Any) -> Stored[Account] | None:
        return await self.identity.read(services_id)

    async def put_services(self, services_id: uuid.UUID, record: Account,
                           current: Stored[Account] | None) -> Stored[Account]:
        return await self.identity.put(services_id, record,
                                       current.etag if current else None)

    async def write_legacy(self, conn: asyncpg.Connection, legacy_id: int | None,
                           services_id: uuid.UUID, record: Account) -> int:
        try:
            return await legacy.write_customer(conn, legacy_id, services_id, record)
        except legacy.Refused as exc:
            raise Rejected(str(exc)) from exc


class Addresses(_People):
    links = ADDRESSES
    table = "addresses"

    def __init__(self, identity: Identity) -> None:
        self.identity = identity

    async def read_legacy(self, conn: asyncpg.Connection, legacy_id: int) -> Address | None:
        return await legacy.read_address(conn, legacy_id)

    async def read_services(self, services_id: uuid.UUID, known: Address | None,
                            hint: Any) -> Stored[Address] | None:
        # Read through its account: the monolith's row, the last synced record or the
        # event names the owner.
        owner = known.owner if known is not None else hint
        if owner is None:
            return None
        return await self.identity.read_address(uuid.UUID(str(owner)), services_id)

    async def put_services(self, services_id: uuid.UUID, record: Address,
                           current: Stored[Address] | None) -> Stored[Address]:
        return await self.identity.put_address(services_id, record, current)

    async def write_legacy(self, conn: asyncpg.Connection, legacy_id: int | None,
                           services_id: uuid.UUID, record: Address) -> int:
        try:
            return await legacy.write_address(conn, legacy_id, services_id, record)
        except legacy.OwnerMissing as exc:
            raise Transient(str(exc)) from exc
