"""`mercato legacy check`: the monolith's own invariants, read from its shared schema and
from the payment provider it charges, so a migration step is judged on both sides
(`mercato check` judges the services).

- every order has lines, and its total is the sum of quantity x unit price;
- every order has exactly one payment, of the order's total in its currency;
- every order that is not cancelled has a shipment whose status follows the order's (PAID:
  READY, SHIPPED: SHIPPED, DELIVERED: DELIVERED); a cancelled order's payment is refunded;
- the provider agrees: each live charge under a legacy checkout key (authorized or
  captured) belongs to a stored payment, of the same amount, and a payment's charge is
  known to the provider in the state the payment says. The seeded year of trading wrote
  payments whose charges predate the provider (``seed-charge-``): those are not looked up.

Checkouts still in flight hold an authorization before their order commits, and the capture
follows the commit: rows and charges younger than the grace are not compared with each
other. Pure rules over rows (the tests feed them rows); ``check`` reads the sources.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from mercato.invariants import LEGACY_CHARGE_PREFIX as CHARGE_KEY_PREFIX
from mercato.invariants import Violation

Row = Any  # asyncpg.Record or dict

SEEDED_CHARGE_PREFIX = "seed-charge-"
SHIPMENT_FOR = {"PAID": "READY", "SHIPPED": "SHIPPED", "DELIVERED": "DELIVERED"}
PAYMENT_FOR_CHARGE = {"authorized": "AUTHORIZED", "captured": "CAPTURED",
                      "refunded": "REFUNDED"}
LIVE_CHARGES = ("authorized", "captured")


def _money(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def evaluate(*, orders: list[Row], lines: list[Row], payments: list[Row],
             shipments: list[Row], charges: list[dict[str, Any]] | None) -> list[Violation]:
    """``orders``: id, status, total, currency, settled (older than the grace);
    ``lines``: order_id, n, sum (quantity x unit price); ``payments``: order_id, n,
    provider_charge_id, status, amount, currency; ``shipments``: order_id, status;
    ``charges``: the provider's (None when it cannot be read)."""
    found: list[Violation] = []
    line_of = {r["order_id"]: r for r in lines}
    pay_of = {r["order_id"]: r for r in payments}
    ship_of = {r["order_id"]: r for r in shipments}
    for o in orders:
        oid = str(o["id"])
        if not o["settled"]:
            continue  # the checkout's transaction or its capture may still be under way
        total = _money(o["total"])
        line = line_of.get(o["id"])
        if line is None or not line["n"]:
            found.append(Violation("every order has lines", oid, "no order lines"))
        elif _money(line["sum"]) != total:
            found.append(Violation("an order's total is the sum of its lines", oid,
                                   f"total {total}, lines sum to {_money(line['sum'])}"))
        pay = pay_of.get(o["id"])
        if pay is None:
            found.append(Violation("every order has its payment", oid, "no payment row"))
        elif _money(pay["amount"]) != total or pay["currency"] != o["currency"]:
            found.append(Violation("every order has its payment", oid,
                                   f"payment of {pay['amount']} {pay['currency']}, order "
                                   f"total {total} {o['currency']}"))
        ship = ship_of.get(o["id"])
        if o["status"] == "CANCELLED":
            if pay is not None and pay["status"] != "REFUNDED":
                found.append(Violation("a cancelled order is refunded", oid,
                                       f"its payment is {pay['status']}"))
        elif ship is None:
            found.append(Violation("every order that is not cancelled has a shipment", oid,
                                   f"order {o['status']}, no shipment"))
        elif ship["status"] != SHIPMENT_FOR.get(o["status"]):
            found.append(Violation("a shipment follows its order", oid,
                                   f"order {o['status']}, shipment {ship['status']}"))
    if charges is not None:
        found += provider_matches(orders, payments, charges)
    return found


def provider_matches(orders: list[Row], payments: list[Row],
                     charges: list[dict[str, Any]]) -> list[Violation]:
    invariant = "the provider's legacy charges match the stored payments"
    settled = {str(o["id"]) for o in orders if o["settled"]}
    by_charge = {str(p["provider_charge_id"]): p for p in payments}
    charge_by_id = {str(c.get("id")): c for c in charges}
    found: list[Violation] = []
    live_per_order: dict[str, list[str]] = defaultdict(list)
    for c in charges:
        key = str(c.get("idempotency_key") or "")
        if not key.startswith(CHARGE_KEY_PREFIX) or c.get("status") not in LIVE_CHARGES:
            continue
        pay = by_charge.get(str(c.get("id")))
        if pay is None:
            if c.get("settled", True):  # see ``settle``
                found.append(Violation(invariant, str(c.get("id")),
                                       f"{c.get('status')} {c.get('amount')} "
                                       f"{c.get('currency')} under {key!r}, and the shop "
                                       "stored no payment for it (money held, no order)"))
            continue
        live_per_order[str(pay["order_id"])].append(str(c.get("id")))
        if _money(c.get("amount")) != _money(pay["amount"]):
            found.append(Violation(invariant, str(pay["order_id"]),
                                   f"charge {c.get('id')} of {c.get('amount')}, payment of "
                                   f"{pay['amount']}"))
    for order_id, ids in live_per_order.items():
        if len(ids) > 1:
            found.append(Violation(invariant, order_id, f"{len(ids)} live charges: "
                                   + ", ".join(ids)))
    for p in payments:
        charge_id = str(p["provider_charge_id"])
        if charge_id.startswith(SEEDED_CHARGE_PREFIX) or str(p["order_id"]) not in settled:
            continue
        c = charge_by_id.get(charge_id)
        if c is None:
            found.append(Violation(invariant, str(p["order_id"]),
                                   f"payment's charge {charge_id} is unknown to the provider"))
        elif PAYMENT_FOR_CHARGE.get(str(c.get("status"))) != p["status"]:
            found.append(Violation(invariant, str(p["order_id"]),
                                   f"payment {p['status']}, the provider's charge "
                                   f"{charge_id} is {c.get('status')}"))
    return found


def settle(charges: list[dict[str, Any]], now: datetime, grace_s: float
           ) -> list[dict[str, Any]]:
    """The charges, each marked ``settled`` when unchanged for the grace (an authorization
    younger than that may belong to a checkout whose transaction has not committed)."""
    marked = []
    for c in charges:
        try:
            changed = datetime.fromisoformat(str(c.get("updated_at")))
            settled = (now - changed).total_seconds() > grace_s
        except ValueError:
            settled = True
        marked.append({**c, "settled": settled})
    return marked


ORDERS_SQL = ("SELECT id, status, total, currency, "
              "updated_at < now() - make_interval(secs => $1) AS settled FROM orders")
LINES_SQL = ("SELECT order_id, count(*) AS n, sum(quantity * unit_price) AS sum "
             "FROM order_lines GROUP BY order_id")
PAYMENTS_SQL = ("SELECT order_id, provider_charge_id, status, amount, currency "
                "FROM payments")
SHIPMENTS_SQL = "SELECT order_id, status FROM shipments"


async def check(database_url: str, charges: list[dict[str, Any]] | None, *,
                grace_s: float) -> list[Violation]:
    """Read the legacy database (one repeatable-read snapshot) and judge it."""
    import asyncpg
    from chassis.messaging.relay import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=5)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            orders = list(await conn.fetch(ORDERS_SQL, grace_s))
            lines = list(await conn.fetch(LINES_SQL))
            payments = list(await conn.fetch(PAYMENTS_SQL))
            shipments = list(await conn.fetch(SHIPMENTS_SQL))
    finally:
        await conn.close()
    return evaluate(orders=orders, lines=lines, payments=payments, shipments=shipments,
                    charges=None if charges is None
                    else settle(charges, datetime.now(UTC), grace_s))
