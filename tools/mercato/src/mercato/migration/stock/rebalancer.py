"""One pass of the rebalancer: finish open transfers, take new products into the split, and
move free units toward the checkout share (ADR 0034)."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
import structlog

from mercato.migration import ids
from mercato.migration.stock.inventory import Inventory, Level
from mercato.migration.stock.split import DEFAULT_FLOOR, plan
from mercato.migration.stock.transfers import Transfers

log = structlog.get_logger("mercato.migration.stock")

BATCH = 100
# A product whose transfer the inventory refused for good (reverted) is left alone this
# long, so a refusal that will not change (a bound, a SKU it cannot take) is not retried
# every pass, each time with a debit and a credit back.
REVERT_BACKOFF_S = 60.0
PRODUCTS_CODE = ids.TABLES["products"]
# The SKU as the catalog keeps it (trimmed, upper-cased: catalog.domain.model), which the
# inventory and the saga use; a SKU the catalog cannot take is never sold by the services,
# so its product stays wholly the monolith's.
_NEW = ("SELECT p.id, upper(btrim(p.sku)) AS sku FROM products p JOIN stock s "
        "ON s.product_id = p.id WHERE NOT EXISTS (SELECT 1 FROM legacy_stock_split x "
        "WHERE x.product_id = p.id) AND upper(btrim(p.sku)) ~ '^[A-Z0-9][A-Z0-9-]{1,39}$' "
        "ORDER BY p.id LIMIT $1")
# Products born in the services (the sync wrote them here under their own catalog id) stay
# out: their units are the inventory's; the monolith only got a stock row at 0.
_NEW_SYNCED = ("SELECT p.id, upper(btrim(p.sku)) AS sku FROM products p JOIN stock s "
               "ON s.product_id = p.id WHERE NOT EXISTS (SELECT 1 FROM legacy_stock_split x "
               "WHERE x.product_id = p.id) "
               "AND upper(btrim(p.sku)) ~ '^[A-Z0-9][A-Z0-9-]{1,39}$' "
               "AND NOT EXISTS (SELECT 1 FROM mercato_sync.products m WHERE "
               "m.legacy_id = p.id AND m.catalog_id <> legacy_services_id($2, p.id)) "
               "ORDER BY p.id LIMIT $1")


@dataclass
class Pass:
    finished: int = 0
    adopted: int = 0
    moved: dict[str, int] = field(default_factory=lambda: {"to_services": 0, "to_legacy": 0})
    failed: int = 0
    # What each side owned as the pass left it (the services: on hand, of it reserved).
    units: dict[str, int] = field(default_factory=lambda: {
        "legacy": 0, "services": 0, "services_reserved": 0})


async def adopt(pool: asyncpg.Pool, inventory: Inventory, limit: int = BATCH) -> int:
    """Take up to ``limit`` products born in the monolith and not yet in the split into
    it, recording the units each side has now (the base of the conservation check). A
    product's SKU is the same in catalog and inventory (the catalog backfill keeps the
    monolith's SKU)."""
    async with pool.acquire() as conn:
        synced = await conn.fetchval("SELECT to_regclass('mercato_sync.products')") is not None
        rows = await (conn.fetch(_NEW_SYNCED, limit, PRODUCTS_CODE) if synced
                      else conn.fetch(_NEW, limit))
    if not rows:
        return 0
    levels = await inventory.levels([r["sku"] for r in rows])
    async with pool.acquire() as conn, conn.transaction():
        for r in rows:
            level = levels.get(r["sku"], Level(0, 0))
            # The stock row locked: no checkout moves it between the count and the record
            # (a checkout locks it before it writes its lines, so its sale is classed as one).
            on_hand = await conn.fetchval(
                "SELECT on_hand FROM stock WHERE product_id = $1 FOR UPDATE", r["id"])
            await conn.execute(
                "INSERT INTO legacy_stock_split (product_id, sku, started_legacy, "
                "started_services) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                r["id"], r["sku"], on_hand, level.on_hand)
    log.info("stock_split_adopted", products=len(rows))
    return len(rows)


async def rebalance(pool: asyncpg.Pool, inventory: Inventory, transfers: Transfers,
                    percent: int, floor: int = DEFAULT_FLOOR) -> Pass:
    done = Pass()
    for t in await transfers.open():
        await transfers.finish(t)
        done.finished += 1
    while (n := await adopt(pool, inventory)) > 0:
        done.adopted += n
    after = 0
    async with pool.acquire() as conn:
        resting = {r[0] for r in await conn.fetch(
            "SELECT DISTINCT product_id FROM legacy_stock_transfers WHERE state = 'reverted' "
            "AND updated_at > now() - make_interval(secs => $1)", REVERT_BACKOFF_S)}
    while True:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT x.product_id, x.sku, s.on_hand FROM legacy_stock_split x "
                "JOIN stock s ON s.product_id = x.product_id WHERE x.product_id > $1 "
                "ORDER BY x.product_id LIMIT $2", after, BATCH)
        if not rows:
            return done
        after = rows[-1]["product_id"]
        levels = await inventory.levels([r["sku"] for r in rows])
        for r in rows:
            level = levels.get(r["sku"], Level(0, 0))
            if r["product_id"] in resting:
                done.units["legacy"] += r["on_hand"]
                done.units["services"] += level.on_hand
                done.units["services_reserved"] += level.reserved
                continue
            move = plan(r["on_hand"], max(0, level.free), percent, floor).to_services
            t = None
            if move > 0:
                t = await transfers.to_services(r["product_id"], r["sku"], move)
            elif move < 0:
                t = await transfers.to_legacy(r["product_id"], r["sku"], -move)
            moved = 0
            if t is not None and t.state == "done":
                done.moved[t.direction] += t.quantity
                moved = t.quantity if t.direction == "to_services" else -t.quantity
            elif t is not None:
                done.failed += 1
            done.units["legacy"] += r["on_hand"] - moved
            done.units["services"] += level.on_hand + moved
            done.units["services_reserved"] += level.reserved
