"""`mercato check`: the shop's invariants, read from every service's own database.

Each service owns its data, so the checker reads each database with that service's own role
(the runtime's secrets) and joins across them in memory. It reports, and changes nothing:
- every order is terminal, or its saga is within its deadline (plus a grace);
- per order, captured - refunded is 0 or the order total: the total for an approved order,
  0 for a rejected or cancelled one; at most one capture per order;
- stock on hand and reserved are never negative, reserved ≤ on hand, no reservation is
  left held for a rejected or cancelled order, and a cancelled order's units are back on
  hand (its reservation not left committed);
- a shipment exists (not cancelled) only for an approved order (or one still in flight);
- at most one notification per order and kind.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
from chassis.messaging.relay import asyncpg_dsn

from mercato.runtime.paths import Home
from mercato.runtime.postgres import Postgres

DEADLINE_GRACE_S = 30
TERMINAL = ("APPROVED", "REJECTED", "CANCELLED")


@dataclass(frozen=True)
class Violation:
    invariant: str
    subject: str
    detail: str


async def _fetch(urls: dict[str, str | None], service: str, sql: str,
                 *args: Any) -> list[asyncpg.Record]:
    url = urls.get(service)
    if url is None:
        return []
    conn = await asyncpg.connect(asyncpg_dsn(url), timeout=5)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def check(home: Home) -> list[Violation]:
    pg = Postgres(home, home.ports().postgres)
    services = ("orders", "payments", "inventory", "shipping", "notifications")
    urls = {s: pg.service_database_url(s) for s in services}
    orders, stuck, ledger, stock, held, shipments, notes = await asyncio.gather(
        _fetch(urls, "orders", "SELECT id::text AS id, status, total FROM orders"),
        _fetch(urls, "orders",
               "SELECT s.id::text AS id, s.status, s.deadline_at FROM saga_instances s "
               "WHERE s.status IN ('RUNNING', 'COMPENSATING') AND s.deadline_at < now() "
               "- make_interval(secs => $1)", DEADLINE_GRACE_S),
        _fetch(urls, "payments",
               "SELECT order_id, "
               "coalesce(sum(amount) FILTER (WHERE kind = 'capture'), 0) AS captured, "
               "coalesce(sum(amount) FILTER (WHERE kind = 'refund'), 0) AS refunded, "
               "count(*) FILTER (WHERE kind = 'capture') AS captures "
               "FROM ledger_entries GROUP BY order_id"),
        _fetch(urls, "inventory", "SELECT sku, on_hand, reserved FROM stock "
                                  "WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand"),
        _fetch(urls, "inventory", "SELECT reservation_id, order_id, status FROM reservations "
                                  "WHERE status IN ('reserved', 'committed')"),
        _fetch(urls, "shipping", "SELECT shipment_id, order_id, status FROM shipments "
                                 "WHERE status <> 'CANCELLED'"),
        _fetch(urls, "notifications", "SELECT order_id, kind, count(*) AS n FROM notifications "
                                      "GROUP BY order_id, kind HAVING count(*) > 1"))
    return evaluate(orders=orders, stuck=stuck, ledger=ledger, stock=stock, held=held,
                    shipments=shipments, notes=notes)


Row = Any  # an asyncpg.Record or a dict: read by key


def evaluate(*, orders: list[Row], stuck: list[Row], ledger: list[Row], stock: list[Row],
             held: list[Row], shipments: list[Row], notes: list[Row]) -> list[Violation]:
    """The violations in rows read from the services' databases (see ``check``)."""
    by_id: dict[str, Any] = {o["id"]: o for o in orders}
    found: list[Violation] = []
    for saga in stuck:
        found.append(Violation("order terminal or within its deadline", saga["id"],
                               f"saga {saga['status']} past its deadline {saga['deadline_at']}"))
    charged = set()
    for row in ledger:
        charged.add(row["order_id"])
        order = by_id.get(row["order_id"])
        net = Decimal(row["captured"]) - Decimal(row["refunded"])
        if row["captures"] > 1:
            found.append(Violation("at most one capture per order", row["order_id"],
                                   f"{row['captures']} captures"))
        if order is None:
            if net != 0:
                found.append(Violation("captured - refunded is 0 or the total",
                                       row["order_id"], f"net captured {net}, unknown order"))
            continue
        total = Decimal(order["total"])
        expected = {"APPROVED": (total,), "REJECTED": (Decimal(0),),
                    "CANCELLED": (Decimal(0),)}.get(order["status"], (Decimal(0), total))
        if net not in expected:
            found.append(Violation("captured - refunded is 0 or the total", row["order_id"],
                                   f"net captured {net}, total {order['total']}, order "
                                   f"{order['status']}"))
    for order in orders:
        if order["status"] == "APPROVED" and order["id"] not in charged:
            found.append(Violation("captured - refunded is 0 or the total", order["id"],
                                   f"approved, but nothing captured of {order['total']}"))
    for row in stock:
        found.append(Violation("stock never negative", row["sku"],
                               f"on hand {row['on_hand']}, reserved {row['reserved']}"))
    for row in held:
        order = by_id.get(row["order_id"] or row["reservation_id"])
        if order is None:
            continue
        if row["status"] == "reserved" and order["status"] in ("REJECTED", "CANCELLED"):
            found.append(Violation("no reservation held for a rejected/cancelled order",
                                   order["id"], f"reservation {row['reservation_id']} held"))
        elif row["status"] == "committed" and order["status"] == "CANCELLED":
            found.append(Violation("a cancelled order's units are back on hand", order["id"],
                                   f"reservation {row['reservation_id']} still committed"))
    for row in shipments:
        order = by_id.get(row["order_id"])
        if order is not None and order["status"] in ("REJECTED", "CANCELLED"):
            found.append(Violation("a shipment only for an approved order", order["id"],
                                   f"shipment {row['shipment_id']} is {row['status']}, "
                                   f"order {order['status']}"))
    for row in notes:
        found.append(Violation("one notification per order and kind", row["order_id"],
                               f"{row['n']} x {row['kind']}"))
    return found
