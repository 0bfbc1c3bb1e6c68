"""The sync's own state, in the monolith's database (schema ``mercato_sync``), so that a
write into the legacy tables, the record's new base, its id pair and a conflict commit in
one transaction (ADR 0029, 0031). The monolith's code never reads this schema.

One id map a kind of record (``Links``): products (with the catalog's product versions),
accounts (with identity's account versions) and addresses."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg

from mercato.migration.sync.records import RULE, Account, Address, Record, Synced

T = TypeVar("T", bound=Synced)

SCHEMA = [
    "CREATE SCHEMA IF NOT EXISTS mercato_sync",
    """CREATE TABLE IF NOT EXISTS mercato_sync.checkpoints (
        name       text PRIMARY KEY,
        position   bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now())""",
    # The id map and, per product, the record both sides last agreed on (the merge base).
    """CREATE TABLE IF NOT EXISTS mercato_sync.products (
        legacy_id       bigint PRIMARY KEY,
        catalog_id      uuid NOT NULL UNIQUE,
        base            jsonb NOT NULL,
        catalog_version integer NOT NULL,
        synced_at       timestamptz NOT NULL DEFAULT now())""",
    # The same for identity's records; legacy ids are customers' and addresses' ids.
    *(f"""CREATE TABLE IF NOT EXISTS mercato_sync.{kind} (
        legacy_id   bigint PRIMARY KEY,
        services_id uuid NOT NULL UNIQUE,
        base        jsonb NOT NULL,
        version     integer NOT NULL,
        synced_at   timestamptz NOT NULL DEFAULT now())""" for kind in ("accounts", "addresses")),
    """CREATE TABLE IF NOT EXISTS mercato_sync.categories (
        slug      text PRIMARY KEY,
        legacy_id bigint NOT NULL)""",
    # Both versions of a conflicting product, and what both sides got. The fingerprint
    # (product and the conflicting values) keeps one row when a crash makes the sync
    # resolve the same conflict again.
    """CREATE TABLE IF NOT EXISTS mercato_sync.conflicts (
        id          bigserial PRIMARY KEY,
        legacy_id   bigint NOT NULL,
        catalog_id  uuid NOT NULL,
        fields      text[] NOT NULL,
        base        jsonb,
        legacy      jsonb NOT NULL,
        services    jsonb NOT NULL,
        resolved    jsonb NOT NULL,
        rule        text NOT NULL,
        fingerprint text NOT NULL UNIQUE,
        detected_at timestamptz NOT NULL DEFAULT now())""",
    # Changes the other side refused (a 4xx: a SKU it cannot take, a price with decimals
    # its currency has none of): recorded, counted, not retried.
    """CREATE TABLE IF NOT EXISTS mercato_sync.rejects (
        id         bigserial PRIMARY KEY,
        direction  text NOT NULL,
        legacy_id  bigint,
        catalog_id uuid,
        reason     text NOT NULL,
        at         timestamptz NOT NULL DEFAULT now())""",
    # What the sync is about to state to a service, committed before it does: if it dies
    # before the monolith's side commits, the next step knows the services' value is its
    # own (records.merge's services_base). Cleared in the step's own transaction.
    """CREATE TABLE IF NOT EXISTS mercato_sync.intents (
        kind        text NOT NULL,
        services_id uuid NOT NULL,
        record      jsonb NOT NULL,
        PRIMARY KEY (kind, services_id))""",
    # Which kind of record a conflict or a refusal is of (its services id is in catalog_id,
    # the column's first name).
    "ALTER TABLE mercato_sync.conflicts ADD COLUMN IF NOT EXISTS kind text NOT NULL "
    "DEFAULT 'products'",
    "ALTER TABLE mercato_sync.rejects ADD COLUMN IF NOT EXISTS kind text NOT NULL "
    "DEFAULT 'products'",
]
# One sync at a time: a second instance waits on this (session) lock, which dies with its
# holder's connection, kill -9 included.
LOCK_KEY = 0x6D73796E63  # "msync"


@dataclass(frozen=True, slots=True)
class Link(Generic[T]):
    legacy_id: int
    catalog_id: uuid.UUID  # the services' id (the catalog's, first)
    base: T
    catalog_version: int  # the services' version of the record the base is


@dataclass(frozen=True, slots=True)
class Links(Generic[T]):
    """Where one kind's id map is kept, and its record type."""

    kind: str
    table: str
    services_id: str
    version: str
    record: type[T]


PRODUCTS = Links("products", "mercato_sync.products", "catalog_id", "catalog_version", Record)
ACCOUNTS = Links("accounts", "mercato_sync.accounts", "services_id", "version", Account)
ADDRESSES = Links("addresses", "mercato_sync.addresses", "services_id", "version", Address)


async def create(conn: asyncpg.Connection) -> None:
    for statement in SCHEMA:
        await conn.execute(statement)


def _link(links: Links[T], row: asyncpg.Record | None) -> Link[T] | None:
    if row is None:
        return None
    base = row["base"]
    return Link(row["legacy_id"], row[links.services_id],
                links.record.of_json(json.loads(base) if isinstance(base, str) else base),
                row[links.version])


async def link(conn: asyncpg.Connection, *, legacy_id: int | None = None,
               catalog_id: uuid.UUID | None = None,
               links: Links[Any] = PRODUCTS) -> Link[Any] | None:
    # Table and column names come from the Links constants above, never from input.
    if legacy_id is not None:
        return _link(links, await conn.fetchrow(
            f"SELECT * FROM {links.table} WHERE legacy_id = $1", legacy_id))  # noqa: S608
    return _link(links, await conn.fetchrow(
        f"SELECT * FROM {links.table} WHERE {links.services_id} = $1",  # noqa: S608
        catalog_id))


async def save_link(conn: asyncpg.Connection, legacy_id: int, catalog_id: uuid.UUID,
                    base: Synced, catalog_version: int,
                    links: Links[Any] = PRODUCTS) -> None:
    # A monolith row deleted by hand and made again by the sync has a new id: the pair
    # moves to it.
    t, sid, version = links.table, links.services_id, links.version
    await conn.execute(f"DELETE FROM {t} WHERE {sid} = $1 "  # noqa: S608
                       "AND legacy_id <> $2", catalog_id, legacy_id)
    await conn.execute(
        f"INSERT INTO {t} (legacy_id, {sid}, base, {version}) "  # noqa: S608
        "VALUES ($1, $2, $3::jsonb, $4) ON CONFLICT (legacy_id) DO UPDATE SET "
        f"base = excluded.base, {version} = excluded.{version}, synced_at = now()",
        legacy_id, catalog_id, json.dumps(base.as_json()), catalog_version)


async def intent(conn: asyncpg.Connection, links: Links[T],
                 services_id: uuid.UUID) -> T | None:
    found = await conn.fetchval("SELECT record FROM mercato_sync.intents WHERE kind = $1 "
                                "AND services_id = $2", links.kind, services_id)
    if found is None:
        return None
    return links.record.of_json(json.loads(found) if isinstance(found, str) else found)


async def save_intent(conn: asyncpg.Connection, links: Links[Any], services_id: uuid.UUID,
                      record: Synced) -> None:
    await conn.execute(
        "INSERT INTO mercato_sync.intents (kind, services_id, record) VALUES ($1, $2, "
        "$3::jsonb) ON CONFLICT (kind, services_id) DO UPDATE SET record = excluded.record",
        links.kind, services_id, json.dumps(record.as_json()))


async def clear_intent(conn: asyncpg.Connection, links: Links[Any],
                       services_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM mercato_sync.intents WHERE kind = $1 AND services_id = $2",
                       links.kind, services_id)


async def checkpoint(conn: asyncpg.Connection, name: str) -> int:
    found = await conn.fetchval(
        "SELECT position FROM mercato_sync.checkpoints WHERE name = $1", name)
    return int(found or 0)


async def save_checkpoint(conn: asyncpg.Connection, name: str, position: int) -> None:
    await conn.execute(
        "INSERT INTO mercato_sync.checkpoints (name, position) VALUES ($1, $2) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = now()",
        name, position)


async def prune_outbox(conn: asyncpg.Connection, older_than_s: float,
                       batch: int = 5000) -> int:
    """Delete the monolith's outbox rows the sync has passed (at or before its checkpoint)
    and that are older than ``older_than_s``; the number deleted. The triggers add a row for
    every change the shop makes, and nothing else reads them once passed: unpruned, the
    table grew without end. In batches, so a long-unpruned table is not one huge delete."""
    position = await checkpoint(conn, "legacy_outbox")
    deleted = 0
    while True:
        status = await conn.execute(
            "DELETE FROM legacy_outbox WHERE id IN (SELECT id FROM legacy_outbox "
            "WHERE id <= $1 AND created_at < now() - make_interval(secs => $2) "
            "ORDER BY id LIMIT $3)", position, older_than_s, batch)
        done = int(status.split()[-1])
        deleted += done
        if done < batch:
            return deleted


# Never shown, never stored outside the record itself: a conflict keeps that a hash changed.
_SECRET = {"password_hash"}


def _shown(record: Synced) -> str:
    doc = record.as_json()
    return json.dumps({k: ("(changed)" if k in _SECRET and v else v) for k, v in doc.items()})


async def record_conflict(conn: asyncpg.Connection, legacy_id: int, catalog_id: uuid.UUID,
                          fields: tuple[str, ...], base: Synced | None, legacy: Synced,
                          services: Synced, resolved: Synced, kind: str = "products") -> bool:
    """True when this conflict is new (not one recorded before a crash)."""
    values = {f: [None if base is None else getattr(base, f), getattr(legacy, f),
                  getattr(services, f)] for f in fields}
    # A product's fingerprint is as it always was; other kinds name theirs.
    key = [legacy_id, values] if kind == "products" else [kind, legacy_id, values]
    fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True,
                                            default=str).encode()).hexdigest()
    done = await conn.fetchval(
        "INSERT INTO mercato_sync.conflicts (legacy_id, catalog_id, fields, base, legacy, "
        "services, resolved, rule, fingerprint, kind) VALUES ($1, $2, $3, $4::jsonb, "
        "$5::jsonb, $6::jsonb, $7::jsonb, $8, $9, $10) ON CONFLICT (fingerprint) DO NOTHING "
        "RETURNING id",
        legacy_id, catalog_id, list(fields), None if base is None else _shown(base),
        _shown(legacy), _shown(services), _shown(resolved), RULE, fingerprint, kind)
    return done is not None


async def record_reject(conn: asyncpg.Connection, direction: str, legacy_id: int | None,
                        catalog_id: uuid.UUID | None, reason: str,
                        kind: str = "products") -> None:
    await conn.execute(
        "INSERT INTO mercato_sync.rejects (direction, legacy_id, catalog_id, reason, kind) "
        "VALUES ($1, $2, $3, $4, $5)", direction, legacy_id, catalog_id, reason[:2000], kind)


async def conflicts(conn: asyncpg.Connection, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT * FROM mercato_sync.conflicts ORDER BY id DESC LIMIT $1", limit)
    return [{"id": r["id"], "kind": r["kind"], "legacy_id": r["legacy_id"],
             "catalog_id": str(r["catalog_id"]),
             "fields": list(r["fields"]), "rule": r["rule"],
             "detected_at": r["detected_at"].isoformat(),
             **{k: None if r[k] is None else json.loads(r[k])
                for k in ("base", "legacy", "services", "resolved")}} for r in rows]


KINDS = {"catalog": ("products",), "identity": ("accounts", "addresses")}


async def counts(conn: asyncpg.Connection, capability: str = "catalog") -> dict[str, int]:
    kinds = list(KINDS[capability])
    # The id maps' names come from KINDS, never from input.
    linked = " + ".join(f"(SELECT count(*) FROM mercato_sync.{k})"  # noqa: S608
                        for k in kinds)
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM mercato_sync.conflicts WHERE kind = ANY($1)) AS "  # noqa: S608
        "conflicts, (SELECT count(*) FROM mercato_sync.rejects WHERE kind = ANY($1)) AS "
        f"rejects, {linked} AS linked", kinds)
    return dict(row)


async def rejects(conn: asyncpg.Connection, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM mercato_sync.rejects ORDER BY id DESC LIMIT $1",
                            limit)
    return [{"id": r["id"], "kind": r["kind"], "direction": r["direction"],
             "legacy_id": r["legacy_id"],
             "catalog_id": None if r["catalog_id"] is None else str(r["catalog_id"]),
             "reason": r["reason"], "at": r["at"].isoformat()} for r in rows]
