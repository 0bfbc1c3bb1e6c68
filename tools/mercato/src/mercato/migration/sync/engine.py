"""The sync itself: one reconcile step per record, fed from both sides (ADR 0029, 0031).

- ``reconcile`` reads the record on both sides and its base, merges (``records.merge``),
  states the result to the service (``PUT``, with ``If-Match`` where the service versions
  it) and writes the monolith's row, the new base and any conflict in one legacy
  transaction that holds the row's lock throughout. Both sides already holding the merged
  record means nothing is written, so every trigger may be replayed: that is what makes the
  sync idempotent. What differs per kind of record (products, accounts, addresses) is in
  ``kinds``.
- ``pump_legacy`` walks ``legacy_outbox`` from its checkpoint in id order, waiting at a gap
  until every transaction that could still fill it has ended (ids are allocated before
  commit: ADR 0026), and reconciles each row changed by someone other than the sync, of
  the capabilities it follows.
- ``on_catalog_event`` and ``on_identity_event`` take the services' events (the process
  consumes them from JetStream); an event for a version the sync wrote itself is skipped.
- ``backfill`` reconciles every monolith record of a capability from its own checkpoint,
  then every record the service has.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from mercato.migration.sync import legacy, store
from mercato.migration.sync.accounts import Identity
from mercato.migration.sync.catalog import Catalog, Rejected, Stale
from mercato.migration.sync.kinds import Accounts, Addresses, Kind, Products
from mercato.migration.sync.records import merge

log = structlog.get_logger("mercato.migration.sync")

OUTBOX = "legacy_outbox"
TO_SERVICES, TO_LEGACY = "legacy_to_services", "services_to_legacy"
BATCH = 200
BACKFILL_STEP = 50  # records between two saves of the backfill's progress
# The monolith's tables each capability follows, and the kind each table's rows are.
TABLES = {"catalog": {"products": "products"},
          "identity": {"customers": "accounts", "addresses": "addresses"}}


class MalformedEvent(ValueError):
    """An event the sync can never apply: not a JSON object, or without a valid id of the
    record it names. Recorded as a reject and not delivered again; redelivering it forever
    only repeated the error."""


def _event(payload: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except ValueError as exc:
        raise MalformedEvent(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise MalformedEvent("not a JSON object")
    return doc


def _id(doc: dict[str, Any], field: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(doc[field]))
    except (KeyError, ValueError) as exc:
        raise MalformedEvent(f"no valid {field}") from exc


class Metrics:
    """One set a capability: catalog's keep their first names (``sync_*``), identity's are
    ``sync_identity_*``."""

    def __init__(self, prefix: str = "sync") -> None:
        r = self.registry = CollectorRegistry()
        self.applied = Counter(f"{prefix}_applied", "Writes the sync made, per side written",
                               ["side"], registry=r)
        self.echoes = Counter(f"{prefix}_echoes_skipped", "Changes the sync had written "
                              "itself, seen coming back and skipped", ["side"], registry=r)
        self.conflicts = Counter(f"{prefix}_conflicts", "Records changed on both sides "
                                 "before either change was synced", registry=r)
        self.errors = Counter(f"{prefix}_errors", "Failed sync steps: transient (retried) or "
                              "rejected (recorded, not retried)", ["direction", "kind"],
                              registry=r)
        self.lag = Gauge(f"{prefix}_lag_seconds", "Age of the oldest change not yet synced",
                         ["direction"], registry=r)
        self.backlog = Gauge(f"{prefix}_backlog", "Changes seen but not yet synced",
                             ["direction"], registry=r)
        self.prefix = prefix

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(f"{self.prefix}_{name}", labels or {}) or 0.0


@dataclass
class Outcome:
    legacy_written: bool = False
    catalog_written: bool = False  # the service's side (the catalog's, first)
    conflict: bool = False


class Sync:
    def __init__(self, pool: asyncpg.Pool, catalog: Catalog, identity: Identity | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.pool = pool
        self.catalog = catalog
        self.identity = identity
        self.kinds: dict[str, Kind[Any]] = {"products": Products(catalog)}
        if identity is not None:
            self.kinds.update(accounts=Accounts(identity), addresses=Addresses(identity))
        self.metrics = Metrics()
        self.metrics_of = {"catalog": self.metrics, "identity": Metrics("sync_identity")}
        self.clock = clock
        # The capabilities whose monolith rows the outbox reader reconciles (the process
        # arms each at its first backfill); rows of the others are passed over: their
        # backfill reads every row as it is then.
        self.following: set[str] = {k.capability for k in self.kinds.values()}
        # One record at a time: the pumps and the backfills reconcile through here.
        self.lock = asyncio.Lock()
        self._gaps: dict[int, int] = {}
        self.backfills: dict[str, dict[str, Any]] = {c: {"state": "idle"}
                                                     for c in self.metrics_of}

    @property
    def backfill_state(self) -> dict[str, Any]:
        return self.backfills["catalog"]

    @backfill_state.setter
    def backfill_state(self, state: dict[str, Any]) -> None:
        self.backfills["catalog"] = state

    # -- one record ------------------------------------------------------------------------

    async def reconcile(self, *, legacy_id: int | None = None,
                        catalog_id: uuid.UUID | None = None, kind: str = "products",
                        hint: Any = None) -> Outcome:
        async with self.lock:
            for _ in range(5):
                try:
                    return await self._reconcile(self.kinds[kind], legacy_id, catalog_id, hint)
                except Stale:
                    continue  # changed in the service meanwhile: read both sides again
            raise Stale(f"{kind} {legacy_id or catalog_id} kept changing")

    async def _reconcile(self, kind: Kind[Any], legacy_id: int | None,
                         services_id: uuid.UUID | None, hint: Any) -> Outcome:
        done = Outcome()
        async with self.pool.acquire() as conn, conn.transaction():
            await legacy.mark_origin(conn)
            link = await store.link(conn, legacy_id=legacy_id, catalog_id=services_id,
                                    links=kind.links)
            if link is not None:
                legacy_id, services_id = link.legacy_id, link.catalog_id
            else:
                legacy_id, services_id = await kind.pair(conn, legacy_id, services_id)
            mine = None if legacy_id is None else await kind.read_legacy(conn, legacy_id)
            base = link.base if link is not None else None
            theirs = await kind.read_services(services_id, mine or base, hint)
            if mine is None and theirs is None:
                return done
            told = await store.intent(conn, kind.links, services_id)
            merged = merge(base, mine, theirs.record if theirs else None,
                           told if theirs is not None and theirs.record == told else None)
            stored = theirs
            if theirs is None or merged.record != theirs.record:
                await self._intend(kind, services_id, merged.record)
                stored = await kind.put_services(services_id, merged.record, theirs)
                done.catalog_written = True
            if told is not None or done.catalog_written:
                await store.clear_intent(conn, kind.links, services_id)
            assert stored is not None
            if mine is None or merged.record != mine:
                legacy_id = await kind.write_legacy(
                    conn, legacy_id if mine is not None else None, services_id, merged.record)
                done.legacy_written = True
            assert legacy_id is not None
            if link is None or link.base != merged.record or \
                    link.catalog_version != stored.version:
                await store.save_link(conn, legacy_id, services_id, merged.record,
                                      stored.version, links=kind.links)
            if merged.conflicts and mine is not None and theirs is not None:
                done.conflict = await store.record_conflict(
                    conn, legacy_id, services_id, merged.conflicts, base, mine, theirs.record,
                    merged.record, kind=kind.links.kind)
        metrics = self.metrics_of[kind.capability]
        if done.catalog_written:
            metrics.applied.labels("services").inc()
        if done.legacy_written:
            metrics.applied.labels("legacy").inc()
        if done.conflict:
            metrics.conflicts.inc()
            log.warning("sync_conflict", kind=kind.links.kind, legacy_id=legacy_id,
                        services_id=str(services_id), fields=list(merged.conflicts),
                        winner="services")
        return done

    async def _intend(self, kind: Kind[Any], services_id: uuid.UUID, record: Any) -> None:
        """Committed at once, on a connection of its own: it must outlive this step."""
        async with self.pool.acquire() as conn:
            await store.save_intent(conn, kind.links, services_id, record)

    async def reconcile_or_reject(self, direction: str, *, legacy_id: int | None = None,
                                  catalog_id: uuid.UUID | None = None, kind: str = "products",
                                  hint: Any = None) -> None:
        """A refused change is recorded and passed over; anything else propagates (and is
        retried by the caller)."""
        try:
            await self.reconcile(legacy_id=legacy_id, catalog_id=catalog_id, kind=kind,
                                 hint=hint)
        except Rejected as exc:
            self.metrics_of[self.kinds[kind].capability].errors.labels(
                direction, "rejected").inc()
            log.warning("sync_rejected", direction=direction, kind=kind, legacy_id=legacy_id,
                        services_id=str(catalog_id), reason=str(exc))
            async with self.pool.acquire() as conn:
                await store.record_reject(conn, direction, legacy_id, catalog_id, str(exc),
                                          kind=kind)

    # -- legacy → services -----------------------------------------------------------------

    def _kind_of_table(self, table: str) -> str | None:
        for capability, tables in TABLES.items():
            if table in tables and capability in self.following \
                    and tables[table] in self.kinds:
                return tables[table]
        return None

    async def pump_legacy(self) -> int:
        """One pass over the legacy outbox; the number of rows passed."""
        async with self.pool.acquire() as conn:
            position = await store.checkpoint(conn, OUTBOX)
            # The snapshot first: a transaction it sees running and that commits before the
            # read below is seen by the read. Taken after the read, it let a change that
            # committed between the two look like a rollback, and its gap was passed (lost).
            snap = await conn.fetchrow(
                "SELECT txid_snapshot_xmin(s) AS xmin, txid_snapshot_xmax(s) AS xmax "
                "FROM txid_current_snapshot() s")
            rows = await conn.fetch(
                "SELECT id, table_name, row_id, origin FROM legacy_outbox WHERE id > $1 "
                "ORDER BY id LIMIT $2", position, BATCH)
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
            kind = self._kind_of_table(row["table_name"])
            if kind is not None:
                if row["origin"] == legacy.ORIGIN:
                    self.metrics_of[self.kinds[kind].capability].echoes.labels("legacy").inc()
                else:
                    await self.reconcile_or_reject(TO_SERVICES, legacy_id=int(row["row_id"]),
                                                   kind=kind)
            position, expected = row["id"], row["id"] + 1
            passed += 1
            async with self.pool.acquire() as conn:
                await store.save_checkpoint(conn, OUTBOX, position)
        await self._measure_legacy(position)
        return passed

    async def _measure_legacy(self, position: int) -> None:
        for capability, tables in TABLES.items():
            async with self.pool.acquire() as conn:
                row = await conn.fetchrow(
                    "SELECT count(*) AS n, extract(epoch FROM now() - min(created_at)) AS age "
                    "FROM legacy_outbox WHERE id > $1 AND table_name = ANY($3) "
                    "AND origin <> $2", position, legacy.ORIGIN, list(tables))
            metrics = self.metrics_of[capability]
            metrics.backlog.labels(TO_SERVICES).set(row["n"])
            metrics.lag.labels(TO_SERVICES).set(float(row["age"] or 0))

    # -- services → legacy -----------------------------------------------------------------

    async def _on_event(self, kind: str, services_id: uuid.UUID, version: Any,
                        occurred_at: str | None, hint: Any = None,
                        known_once_linked: bool = False) -> None:
        capability = self.kinds[kind].capability
        # Under the lock: a reconcile that is writing this record has committed its link by
        # then. The service publishes its event as it commits (ADR 0042), often before the
        # sync has recorded the version it wrote; read without the lock, the echo was taken
        # for news and reconciled again, holding the monolith's row meanwhile.
        async with self.lock, self.pool.acquire() as conn:
            link = await store.link(conn, catalog_id=services_id, links=self.kinds[kind].links)
        if link is not None and (known_once_linked or (isinstance(version, int)
                                 and version <= link.catalog_version)):
            self.metrics_of[capability].echoes.labels("services").inc()  # seen already
        else:
            await self.reconcile_or_reject(TO_LEGACY, catalog_id=services_id, kind=kind,
                                           hint=hint)
        if occurred_at:
            try:
                at = datetime.fromisoformat(occurred_at).timestamp()
            except ValueError:  # a header we cannot read says nothing about the lag
                return
            self.metrics_of[capability].lag.labels(TO_LEGACY).set(max(0.0, self.clock() - at))

    async def on_catalog_event(self, payload: bytes, occurred_at: str | None,
                               subject: str = "") -> None:
        doc = _event(payload)
        await self._on_event("products", _id(doc, "product_id"), doc.get("product_version"),
                             occurred_at)

    async def on_identity_event(self, payload: bytes, occurred_at: str | None,
                                subject: str = "") -> None:
        """An account's events carry its version (the sync's own writes are skipped). An
        address's do not: an address added that the id map has is known to both sides
        already (the sync made it, or synced it); an update is reconciled, which finds both
        sides equal when the sync wrote it."""
        doc = _event(payload)
        if "address_id" in doc:
            _id(doc, "user_id")
            await self._on_event("addresses", _id(doc, "address_id"), None, occurred_at,
                                 hint=doc["user_id"],
                                 known_once_linked=subject.endswith(".address_added"))
        else:
            await self._on_event("accounts", _id(doc, "user_id"),
                                 doc.get("account_version"), occurred_at)

    # -- backfill --------------------------------------------------------------------------

    async def _walk_legacy(self, capability: str, table: str,
                           each: Callable[[int], Awaitable[None]],
                           progress: Callable[[int, int], None] | None) -> dict[str, Any]:
        """Every row of ``table`` as the shop is now, from the backfill's checkpoint (so a
        run cut short goes on where it stopped); rows made later (by the sync itself, for
        records born in the services, or by the shop) are the pumps' to follow."""
        name = f"backfill:{capability}"
        async with self.pool.acquire() as conn:
            start = await store.checkpoint(conn, name)
            # The table is a constant of TABLES, never input.
            last = int(await conn.fetchval(f"SELECT coalesce(max(id), 0) FROM {table}"))  # noqa: S608
            count = f"SELECT count(*) FROM {table} WHERE id <= $1"  # noqa: S608
            total = int(await conn.fetchval(count, last))
            done = int(await conn.fetchval(count, min(start, last)))
        state = self.backfills[capability] = {"state": "running", "done": done,
                                              "total": total, "resumed_from": start}
        position = start
        while True:
            async with self.pool.acquire() as conn:
                batch = [r["id"] for r in await conn.fetch(
                    f"SELECT id FROM {table} WHERE id > $1 AND id <= $2 "  # noqa: S608
                    "ORDER BY id LIMIT $3", position, last, BATCH)]
            if not batch:
                break
            for legacy_id in batch:
                await each(legacy_id)
                done += 1
                position = legacy_id
                state.update(done=done)
                if progress:
                    progress(done, total)
                if done % BACKFILL_STEP == 0:
                    async with self.pool.acquire() as conn:
                        await store.save_checkpoint(conn, name, position)
            async with self.pool.acquire() as conn:
                await store.save_checkpoint(conn, name, position)
        async with self.pool.acquire() as conn:
            # Complete: the next backfill checks every record again (and writes nothing).
            await store.save_checkpoint(conn, name, 0)
        return state

    async def backfill(self, progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Every monolith product, then every catalog product on sale. Reconciling is
        idempotent: running it twice writes nothing the second time."""
        self.backfills["catalog"] = {"state": "starting"}
        products = self.kinds["products"]
        assert isinstance(products, Products)
        # Every category first, those without products too (a department), so the two
        # sides list the same categories.
        async with self.pool.acquire() as conn:
            for row in await conn.fetch("SELECT id, name FROM categories ORDER BY id"):
                await products.slug_of_legacy(conn, row["id"], row["name"])

        async def each(legacy_id: int) -> None:
            await self.reconcile_or_reject(TO_SERVICES, legacy_id=legacy_id)

        state = await self._walk_legacy("catalog", "products", each, progress)
        page, seen = 1, 0
        while True:
            found, _ = await self.catalog.product_ids(page)
            if not found:
                break
            for catalog_id in found:
                await self.reconcile_or_reject(TO_LEGACY, catalog_id=uuid.UUID(catalog_id))
                seen += 1
            page += 1
        self.backfills["catalog"] = {**state, "state": "done", "catalog_products": seen}
        return {"legacy_products": state["done"], "catalog_products": seen}

    async def backfill_identity(self, progress: Callable[[int, int], None] | None = None
                                ) -> dict[str, int]:
        """Every monolith customer with its addresses, then every identity account with
        its addresses; idempotent and resumable like the catalog's."""
        assert self.identity is not None, "the sync was started without identity"
        identity = self.identity
        self.backfills["identity"] = {"state": "starting"}

        async def each(legacy_id: int) -> None:
            await self.reconcile_or_reject(TO_SERVICES, legacy_id=legacy_id, kind="accounts")
            async with self.pool.acquire() as conn:
                addresses = [r["id"] for r in await conn.fetch(
                    "SELECT id FROM addresses WHERE customer_id = $1 ORDER BY id", legacy_id)]
            for address_id in addresses:
                await self.reconcile_or_reject(TO_SERVICES, legacy_id=address_id,
                                               kind="addresses")

        state = await self._walk_legacy("identity", "customers", each, progress)
        after, seen = None, 0
        while found := await identity.account_ids(after):
            for user_id in found:
                await self.reconcile_or_reject(TO_LEGACY, catalog_id=uuid.UUID(user_id),
                                               kind="accounts")
                for address_id in await identity.address_ids(uuid.UUID(user_id)):
                    await self.reconcile_or_reject(TO_LEGACY, catalog_id=address_id,
                                                   kind="addresses", hint=user_id)
                seen += 1
            after = found[-1]
        self.backfills["identity"] = {**state, "state": "done", "identity_accounts": seen}
        return {"legacy_customers": state["done"], "identity_accounts": seen}
