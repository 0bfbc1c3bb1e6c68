"""The sync itself: one reconcile step per product, fed from both sides (ADR 0029).

- ``reconcile`` reads the product on both sides and its base, merges (``records.merge``),
  states the result to the catalog (``PUT`` with ``If-Match``) and writes the monolith's
  row, the new base and any conflict in one legacy transaction that holds the row's lock
  throughout. Both sides already holding the merged record means nothing is written, so
  every trigger may be replayed: that is what makes the sync idempotent.
- ``pump_legacy`` walks ``legacy_outbox`` from its checkpoint in id order, waiting at a gap
  until every transaction that could still fill it has ended (ids are allocated before
  commit: ADR 0026), and reconciles each product changed by someone other than the sync.
- ``consume_catalog`` is a durable JetStream consumer of ``catalog.events.>``; an event for a
  version the sync wrote itself is skipped.
- ``backfill`` reconciles every monolith product from its own checkpoint, then every
  catalog product on sale.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from mercato.migration import ids
from mercato.migration.sync import legacy, store
from mercato.migration.sync.catalog import Catalog, Rejected, Stale, Stored
from mercato.migration.sync.records import merge, slug_of

log = structlog.get_logger("mercato.migration.sync")

OUTBOX = "legacy_outbox"
BACKFILL = "backfill:catalog"
TO_SERVICES, TO_LEGACY = "legacy_to_services", "services_to_legacy"
BATCH = 200
BACKFILL_STEP = 50  # products between two saves of the backfill's progress


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.applied = Counter("sync_applied", "Writes the sync made, per side written",
                               ["side"], registry=r)
        self.echoes = Counter("sync_echoes_skipped", "Changes the sync had written itself, "
                              "seen coming back and skipped", ["side"], registry=r)
        self.conflicts = Counter("sync_conflicts", "Products changed on both sides before "
                                 "either change was synced", registry=r)
        self.errors = Counter("sync_errors", "Failed sync steps: transient (retried) or "
                              "rejected (recorded, not retried)", ["direction", "kind"],
                              registry=r)
        self.lag = Gauge("sync_lag_seconds", "Age of the oldest change not yet synced",
                         ["direction"], registry=r)
        self.backlog = Gauge("sync_backlog", "Changes seen but not yet synced", ["direction"],
                             registry=r)


@dataclass
class Outcome:
    legacy_written: bool = False
    catalog_written: bool = False
    conflict: bool = False


class Sync:
    def __init__(self, pool: asyncpg.Pool, catalog: Catalog,
                 clock: Callable[[], float] = time.time) -> None:
        self.pool = pool
        self.catalog = catalog
        self.metrics = Metrics()
        self.clock = clock
        # One product at a time: both pumps and the backfill reconcile through here.
        self.lock = asyncio.Lock()
        self._gaps: dict[int, int] = {}
        self.backfill_state: dict[str, int | str] = {"state": "idle"}

    # -- categories ------------------------------------------------------------------------

    async def _slug_of_legacy(self, conn: asyncpg.Connection, category_id: int,
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

    async def _legacy_category(self, conn: asyncpg.Connection, slug: str) -> int:
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

    # -- one product -----------------------------------------------------------------------

    async def reconcile(self, *, legacy_id: int | None = None,
                        catalog_id: uuid.UUID | None = None) -> Outcome:
        async with self.lock:
            for _ in range(5):
                try:
                    return await self._reconcile(legacy_id, catalog_id)
                except Stale:
                    continue  # changed in the catalog meanwhile: read both sides again
            raise Stale(f"product {legacy_id or catalog_id} kept changing")

    async def _reconcile(self, legacy_id: int | None,
                         catalog_id: uuid.UUID | None) -> Outcome:
        done = Outcome()
        async with self.pool.acquire() as conn, conn.transaction():
            await legacy.mark_origin(conn)
            link = await store.link(conn, legacy_id=legacy_id, catalog_id=catalog_id)
            if link is not None:
                legacy_id, catalog_id = link.legacy_id, link.catalog_id
            elif legacy_id is not None:
                catalog_id = ids.services_id("products", legacy_id)
            else:
                assert catalog_id is not None
                legacy_id = ids.legacy_id("products", catalog_id)
            assert catalog_id is not None
            row = None if legacy_id is None else await legacy.read_row(conn, legacy_id,
                                                                        for_update=True)
            mine = None if row is None else legacy.record_of(
                row, await self._slug_of_legacy(conn, row["category_id"], row["category_name"]))
            theirs = await self.catalog.read(catalog_id)
            if mine is None and theirs is None:
                return done
            base = link.base if link is not None else None
            merged = merge(base, mine, theirs.record if theirs else None)
            stored: Stored | None = theirs
            if theirs is None or merged.record != theirs.record:
                stored = await self.catalog.put(catalog_id, merged.record,
                                                theirs.etag if theirs else None)
                done.catalog_written = True
            assert stored is not None
            if mine is None or merged.record != mine:
                category_id = await self._legacy_category(conn, merged.record.category)
                if row is None:
                    legacy_id = await legacy.insert(conn, merged.record, category_id)
                else:
                    assert legacy_id is not None
                    await legacy.update(conn, legacy_id, merged.record, category_id)
                done.legacy_written = True
            assert legacy_id is not None
            if link is None or link.base != merged.record or \
                    link.catalog_version != stored.version:
                await store.save_link(conn, legacy_id, catalog_id, merged.record,
                                      stored.version)
            if merged.conflicts and mine is not None and theirs is not None:
                done.conflict = await store.record_conflict(
                    conn, legacy_id, catalog_id, merged.conflicts, base, mine, theirs.record,
                    merged.record)
        if done.catalog_written:
            self.metrics.applied.labels("services").inc()
        if done.legacy_written:
            self.metrics.applied.labels("legacy").inc()
        if done.conflict:
            self.metrics.conflicts.inc()
            log.warning("sync_conflict", legacy_id=legacy_id, catalog_id=str(catalog_id),
                        fields=list(merged.conflicts), winner="services")
        return done

    async def reconcile_or_reject(self, direction: str, *, legacy_id: int | None = None,
                                  catalog_id: uuid.UUID | None = None) -> None:
        """A refused change is recorded and passed over; anything else propagates (and is
        retried by the caller)."""
        try:
            await self.reconcile(legacy_id=legacy_id, catalog_id=catalog_id)
        except Rejected as exc:
            self.metrics.errors.labels(direction, "rejected").inc()
            log.warning("sync_rejected", direction=direction, legacy_id=legacy_id,
                        catalog_id=str(catalog_id), reason=str(exc))
            async with self.pool.acquire() as conn:
                await store.record_reject(conn, direction, legacy_id, catalog_id, str(exc))

    # -- legacy → services -----------------------------------------------------------------

    async def pump_legacy(self) -> int:
        """One pass over the legacy outbox; the number of rows passed."""
        async with self.pool.acquire() as conn:
            position = await store.checkpoint(conn, OUTBOX)
            rows = await conn.fetch(
                "SELECT id, table_name, row_id, origin FROM legacy_outbox WHERE id > $1 "
                "ORDER BY id LIMIT $2", position, BATCH)
            snap = await conn.fetchrow(
                "SELECT txid_snapshot_xmin(s) AS xmin, txid_snapshot_xmax(s) AS xmax "
                "FROM txid_current_snapshot() s")
        passed = 0
        expected = position + 1
        for row in rows:
            if row["id"] != expected:
                # A gap: an id allocated by a transaction that may still commit. Every such
                # transaction began before this snapshot's xmax; once the oldest running
                # one is past it, the gap is final (rolled back) and may be passed.
                horizon = self._gaps.setdefault(expected, snap["xmax"])
                if snap["xmin"] < horizon:
                    break
                self._gaps.pop(expected, None)
            if row["table_name"] == "products":
                if row["origin"] == legacy.ORIGIN:
                    self.metrics.echoes.labels("legacy").inc()
                else:
                    await self.reconcile_or_reject(TO_SERVICES, legacy_id=int(row["row_id"]))
            position, expected = row["id"], row["id"] + 1
            passed += 1
            async with self.pool.acquire() as conn:
                await store.save_checkpoint(conn, OUTBOX, position)
        await self._measure_legacy(position)
        return passed

    async def _measure_legacy(self, position: int) -> None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT count(*) AS n, extract(epoch FROM now() - min(created_at)) AS age "
                "FROM legacy_outbox WHERE id > $1 AND table_name = 'products' "
                "AND origin <> $2", position, legacy.ORIGIN)
        self.metrics.backlog.labels(TO_SERVICES).set(row["n"])
        self.metrics.lag.labels(TO_SERVICES).set(float(row["age"] or 0))

    # -- services → legacy -----------------------------------------------------------------

    async def on_catalog_event(self, payload: bytes, occurred_at: str | None) -> None:
        doc = json.loads(payload)
        catalog_id = uuid.UUID(doc["product_id"])
        async with self.pool.acquire() as conn:
            link = await store.link(conn, catalog_id=catalog_id)
        version = doc.get("product_version")
        if link is not None and isinstance(version, int) and version <= link.catalog_version:
            self.metrics.echoes.labels("services").inc()  # a version the sync has seen
        else:
            await self.reconcile_or_reject(TO_LEGACY, catalog_id=catalog_id)
        if occurred_at:
            with_tz = datetime.fromisoformat(occurred_at)
            self.metrics.lag.labels(TO_LEGACY).set(max(0.0, self.clock() -
                                                        with_tz.timestamp()))

    # -- backfill --------------------------------------------------------------------------

    async def backfill(self, progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Every monolith product, from the backfill's checkpoint (so a run cut short goes
        on where it stopped), then every catalog product on sale. Reconciling is idempotent:
        running it twice writes nothing the second time."""
        async with self.pool.acquire() as conn:
            start = await store.checkpoint(conn, BACKFILL)
            # The shop as it is now; rows made later (by the sync itself, for products born
            # in the catalog, or by the shop) are the pumps' to follow.
            last = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM products"))
            total = int(await conn.fetchval("SELECT count(*) FROM products WHERE id <= $1",
                                            last))
            done = int(await conn.fetchval("SELECT count(*) FROM products WHERE id <= $1",
                                           min(start, last)))
        # Every category first, those without products too (a department), so the two
        # sides list the same categories.
        async with self.pool.acquire() as conn:
            for row in await conn.fetch("SELECT id, name FROM categories ORDER BY id"):
                await self._slug_of_legacy(conn, row["id"], row["name"])
        self.backfill_state = {"state": "running", "done": done, "total": total,
                               "resumed_from": start}
        position = start
        while True:
            async with self.pool.acquire() as conn:
                batch = [r["id"] for r in await conn.fetch(
                    "SELECT id FROM products WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
                    position, last, BATCH)]
            if not batch:
                break
            for legacy_id in batch:
                await self.reconcile_or_reject(TO_SERVICES, legacy_id=legacy_id)
                done += 1
                position = legacy_id
                self.backfill_state.update(done=done)
                if progress:
                    progress(done, total)
                if done % BACKFILL_STEP == 0:
                    async with self.pool.acquire() as conn:
                        await store.save_checkpoint(conn, BACKFILL, position)
            async with self.pool.acquire() as conn:
                await store.save_checkpoint(conn, BACKFILL, position)
        async with self.pool.acquire() as conn:
            # Complete: the next backfill checks every product again (and writes nothing).
            await store.save_checkpoint(conn, BACKFILL, 0)
        page, seen = 1, 0
        while True:
            found, _ = await self.catalog.product_ids(page)
            if not found:
                break
            for catalog_id in found:
                await self.reconcile_or_reject(TO_LEGACY, catalog_id=uuid.UUID(catalog_id))
                seen += 1
            page += 1
        self.backfill_state = {"state": "done", "done": done, "total": total,
                               "resumed_from": start, "catalog_products": seen}
        return {"legacy_products": done, "catalog_products": seen}
