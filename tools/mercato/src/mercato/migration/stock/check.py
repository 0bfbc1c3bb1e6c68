"""Conservation of the split's units (ADR 0034), read from both databases.

For every product in the split:

    legacy on_hand + inventory on_hand + sold by the monolith + sold by the services
        + units in flight  ==  units at the start + receipts

and neither side negative. Its parts are checked one by one, so a break says where it is:
the monolith's ``stock`` equals its start plus the moves its trigger recorded; the
monolith's transfer moves equal the transfer log; every adjustment the inventory applied is
a transfer of the log, of the same units, applied once, and every finished transfer is
applied; the inventory's on hand equals its start plus its adjustments less its committed
reservations.

Sold by the services: the units of committed reservations of the SKU made since the
product joined the split (restocked ones came back and are not sold). In flight: a transfer
to the services debited here and not yet credited there, or one to the monolith debited
there and not yet credited here. The two databases are read one after the other: a check
that finds a break reads both again (``attempts``) before it reports it, so a transfer or a
checkout between the two reads is not taken for one.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import asyncpg

from mercato.invariants import Violation
from mercato.migration.stock.transfers import TO_SERVICES


@dataclass(frozen=True, slots=True)
class Units:
    product_id: int
    sku: str
    started: int
    legacy: int
    services: int
    services_reserved: int
    sold_legacy: int
    sold_services: int
    receipts: int
    in_flight: int

    def as_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


async def _legacy(conn: asyncpg.Connection) -> dict[str, Any]:
    split = await conn.fetch(
        "SELECT x.*, s.on_hand FROM legacy_stock_split x LEFT JOIN stock s "
        "ON s.product_id = x.product_id ORDER BY x.product_id")
    moves = await conn.fetch("SELECT product_id, kind, sum(delta)::bigint AS units "
                             "FROM legacy_stock_moves GROUP BY product_id, kind")
    transfers = await conn.fetch("SELECT id, product_id, direction, quantity, state "
                                 "FROM legacy_stock_transfers")
    return {"split": split, "moves": moves, "transfers": transfers}


async def _inventory(conn: asyncpg.Connection, skus: list[str],
                     since: dict[str, Any]) -> dict[str, Any]:
    stock = await conn.fetch("SELECT sku, on_hand, reserved FROM stock WHERE sku = ANY($1)",
                             skus)
    adjustments = await conn.fetch(
        "SELECT adjustment_id, sku, delta FROM stock_adjustments "
        "WHERE sku = ANY($1) AND outcome = 'applied'", skus)
    lines = await conn.fetch(
        "SELECT l.sku, r.created_at, l.quantity FROM reservation_lines l JOIN reservations r "
        "ON r.reservation_id = l.reservation_id WHERE l.sku = ANY($1) "
        "AND r.status = 'committed'", skus)
    sold: dict[str, int] = defaultdict(int)
    for line in lines:
        if line["created_at"] >= since[line["sku"]]:
            sold[line["sku"]] += line["quantity"]
    return {"stock": {r["sku"]: r for r in stock}, "adjustments": adjustments, "sold": sold}


def judge(legacy: dict[str, Any], inventory: dict[str, Any]
          ) -> tuple[list[Units], list[Violation]]:
    """Pure: the units of each product and every break of conservation."""
    moves: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for m in legacy["moves"]:
        moves[m["product_id"]][m["kind"]] += int(m["units"])
    transfers: dict[int, list[Any]] = defaultdict(list)
    for t in legacy["transfers"]:
        transfers[t["product_id"]].append(t)
    applied: dict[str, dict[str, int]] = defaultdict(dict)
    for a in inventory["adjustments"]:
        applied[a["sku"]][a["adjustment_id"]] = a["delta"]
    units: list[Units] = []
    out: list[Violation] = []
    for row in legacy["split"]:
        pid, sku = row["product_id"], row["sku"]
        subject = f"{sku} (product {pid})"
        legacy_on_hand = row["on_hand"] or 0
        level = inventory["stock"].get(sku)
        services = level["on_hand"] if level else 0
        reserved = level["reserved"] if level else 0
        if legacy_on_hand < 0 or services < 0 or not 0 <= reserved <= services:
            out.append(Violation("stock.split.negative", subject,
                                 f"legacy {legacy_on_hand}, services {services} "
                                 f"({reserved} reserved)"))
        m = moves[pid]
        if legacy_on_hand != row["started_legacy"] + sum(m.values()):
            out.append(Violation("stock.split.legacy_ledger", subject,
                                 f"on hand {legacy_on_hand}, but {row['started_legacy']} at "
                                 f"the start and {sum(m.values()):+d} of recorded moves"))
        in_flight = logged = 0
        seen: set[str] = set()
        for t in transfers[pid]:
            tid, q = str(t["id"]), t["quantity"]
            sign = 1 if t["direction"] == TO_SERVICES else -1
            got = applied[sku].get(tid)
            seen.add(tid)
            if got is not None and got != sign * q:
                out.append(Violation("stock.split.transfer", subject,
                                     f"transfer {tid} of {sign * q:+d} applied as {got:+d}"))
            if t["direction"] == TO_SERVICES:
                if t["state"] in ("debited", "done"):
                    logged -= q
                if t["state"] == "debited" and got is None:
                    in_flight += q
                if t["state"] == "done" and got is None:
                    out.append(Violation("stock.split.transfer", subject,
                                         f"transfer {tid} to the services is done but the "
                                         "inventory never applied it"))
                if t["state"] == "reverted" and got is not None:
                    out.append(Violation("stock.split.transfer", subject,
                                         f"transfer {tid} was reverted here but applied "
                                         "there"))
            else:
                if t["state"] == "done":
                    logged += q
                    if got is None:
                        out.append(Violation("stock.split.transfer", subject,
                                             f"transfer {tid} to the monolith is done but "
                                             "the inventory never gave the units"))
                if t["state"] == "pending" and got is not None:
                    in_flight += q
                if t["state"] == "failed" and got is not None:
                    out.append(Violation("stock.split.transfer", subject,
                                         f"transfer {tid} failed here but was applied "
                                         "there"))
        if m["transfer"] != logged:
            out.append(Violation("stock.split.transfer", subject,
                                 f"the monolith's stock moved {m['transfer']:+d} by "
                                 f"transfers, the log says {logged:+d}"))
        strangers = sorted(set(applied[sku]) - seen)
        if strangers:
            out.append(Violation("stock.split.transfer", subject,
                                 f"the inventory applied adjustments no transfer made: "
                                 f"{', '.join(strangers[:5])}"))
        sold_services = inventory["sold"].get(sku, 0)
        adjusted = sum(applied[sku].values())
        if services != row["started_services"] + adjusted - sold_services:
            out.append(Violation("stock.split.services_ledger", subject,
                                 f"on hand {services}, but {row['started_services']} at the "
                                 f"start, {adjusted:+d} by transfers and {sold_services} sold"))
        u = Units(pid, sku, row["started_legacy"] + row["started_services"], legacy_on_hand,
                  services, reserved, -m["sale"], sold_services, m["receipt"], in_flight)
        units.append(u)
        total = u.legacy + u.services + u.sold_legacy + u.sold_services + u.in_flight
        if total != u.started + u.receipts:
            out.append(Violation("stock.split.conservation", subject,
                                 f"{u.legacy} here + {u.services} there + {u.sold_legacy} + "
                                 f"{u.sold_services} sold + {u.in_flight} in flight = {total}, "
                                 f"but {u.started} at the start + {u.receipts} received = "
                                 f"{u.started + u.receipts}"))
    return units, out


async def check(legacy_dsn: str, inventory_dsn: str, *, attempts: int = 3,
                pause_s: float = 0.5) -> tuple[list[Units], list[Violation]]:
    legacy_dsn, inventory_dsn = (d.replace("+asyncpg", "") for d in (legacy_dsn, inventory_dsn))
    units: list[Units] = []
    found: list[Violation] = []
    for attempt in range(attempts):
        lc = await asyncpg.connect(legacy_dsn)
        ic = await asyncpg.connect(inventory_dsn)
        try:
            # One snapshot per database: its rows agree with each other.
            async with lc.transaction(isolation="repeatable_read", readonly=True):
                legacy = await _legacy(lc)
            since = {r["sku"]: r["started_at"] for r in legacy["split"]}
            async with ic.transaction(isolation="repeatable_read", readonly=True):
                inventory = await _inventory(ic, list(since), since)
        finally:
            await lc.close()
            await ic.close()
        units, found = judge(legacy, inventory)
        if not found:
            break
        if attempt + 1 < attempts:
            await asyncio.sleep(pause_s)
    return units, found
