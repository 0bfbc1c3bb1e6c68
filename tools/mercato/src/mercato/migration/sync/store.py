"""The sync's own state, in the monolith's database (schema ``mercato_sync``), so that a
write into the legacy tables, the product's new base record, its id pair and a conflict
commit in one transaction (ADR 0029). The monolith's code never reads this schema."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from mercato.migration.sync.records import RULE, Record

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
]
# One sync at a time: a second instance waits on this (session) lock, which dies with its
# holder's connection, kill -9 included.
LOCK_KEY = 0x6D73796E63  # "msync"


@dataclass(frozen=True, slots=True)
class Link:
    legacy_id: int
    catalog_id: uuid.UUID
    base: Record
    catalog_version: int


async def create(conn: asyncpg.Connection) -> None:
    for statement in SCHEMA:
        await conn.execute(statement)


def _link(row: asyncpg.Record | None) -> Link | None:
    if row is None:
        return None
    base = row["base"]
    return Link(row["legacy_id"], row["catalog_id"],
                Record.of_json(json.loads(base) if isinstance(base, str) else base),
                row["catalog_version"])


async def link(conn: asyncpg.Connection, *, legacy_id: int | None = None,
               catalog_id: uuid.UUID | None = None) -> Link | None:
    if legacy_id is not None:
        return _link(await conn.fetchrow(
            "SELECT * FROM mercato_sync.products WHERE legacy_id = $1", legacy_id))
    return _link(await conn.fetchrow(
        "SELECT * FROM mercato_sync.products WHERE catalog_id = $1", catalog_id))


async def save_link(conn: asyncpg.Connection, legacy_id: int, catalog_id: uuid.UUID,
                    base: Record, catalog_version: int) -> None:
    # A monolith row deleted by hand and made again by the sync has a new id: the pair
    # moves to it.
    await conn.execute("DELETE FROM mercato_sync.products WHERE catalog_id = $1 "
                       "AND legacy_id <> $2", catalog_id, legacy_id)
    await conn.execute(
        "INSERT INTO mercato_sync.products (legacy_id, catalog_id, base, catalog_version) "
        "VALUES ($1, $2, $3::jsonb, $4) ON CONFLICT (legacy_id) DO UPDATE SET "
        "base = excluded.base, catalog_version = excluded.catalog_version, synced_at = now()",
        legacy_id, catalog_id, json.dumps(base.as_json()), catalog_version)


async def checkpoint(conn: asyncpg.Connection, name: str) -> int:
    found = await conn.fetchval(
        "SELECT position FROM mercato_sync.checkpoints WHERE name = $1", name)
    return int(found or 0)


async def save_checkpoint(conn: asyncpg.Connection, name: str, position: int) -> None:
    await conn.execute(
        "INSERT INTO mercato_sync.checkpoints (name, position) VALUES ($1, $2) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = now()",
        name, position)


async def record_conflict(conn: asyncpg.Connection, legacy_id: int, catalog_id: uuid.UUID,
                          fields: tuple[str, ...], base: Record | None, legacy: Record,
                          services: Record, resolved: Record) -> bool:
    """True when this conflict is new (not one recorded before a crash)."""
    values = {f: [None if base is None else getattr(base, f), getattr(legacy, f),
                  getattr(services, f)] for f in fields}
    fingerprint = hashlib.sha256(json.dumps([legacy_id, values], sort_keys=True,
                                            default=str).encode()).hexdigest()
    done = await conn.fetchval(
        "INSERT INTO mercato_sync.conflicts (legacy_id, catalog_id, fields, base, legacy, "
        "services, resolved, rule, fingerprint) VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, "
        "$6::jsonb, $7::jsonb, $8, $9) ON CONFLICT (fingerprint) DO NOTHING RETURNING id",
        legacy_id, catalog_id, list(fields),
        None if base is None else json.dumps(base.as_json()), json.dumps(legacy.as_json()),
        json.dumps(services.as_json()), json.dumps(resolved.as_json()), RULE, fingerprint)
    return done is not None


async def record_reject(conn: asyncpg.Connection, direction: str, legacy_id: int | None,
                        catalog_id: uuid.UUID | None, reason: str) -> None:
    await conn.execute(
        "INSERT INTO mercato_sync.rejects (direction, legacy_id, catalog_id, reason) "
        "VALUES ($1, $2, $3, $4)", direction, legacy_id, catalog_id, reason[:2000])


async def conflicts(conn: asyncpg.Connection, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT * FROM mercato_sync.conflicts ORDER BY id DESC LIMIT $1", limit)
    return [{"id": r["id"], "legacy_id": r["legacy_id"], "catalog_id": str(r["catalog_id"]),
             "fields": list(r["fields"]), "rule": r["rule"],
             "detected_at": r["detected_at"].isoformat(),
             **{k: None if r[k] is None else json.loads(r[k])
                for k in ("base", "legacy", "services", "resolved")}} for r in rows]


async def counts(conn: asyncpg.Connection) -> dict[str, int]:
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM mercato_sync.conflicts) AS conflicts, "
        "(SELECT count(*) FROM mercato_sync.rejects) AS rejects, "
        "(SELECT count(*) FROM mercato_sync.products) AS linked")
    return dict(row)


async def rejects(conn: asyncpg.Connection, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM mercato_sync.rejects ORDER BY id DESC LIMIT $1",
                            limit)
    return [{"id": r["id"], "direction": r["direction"], "legacy_id": r["legacy_id"],
             "catalog_id": None if r["catalog_id"] is None else str(r["catalog_id"]),
             "reason": r["reason"], "at": r["at"].isoformat()} for r in rows]
