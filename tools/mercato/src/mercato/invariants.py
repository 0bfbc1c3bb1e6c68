"""The shop's invariants over rows as the services (and simulators) hold them; read by
``mercato.check``. Pure functions: the tests feed them rows.

- every order is terminal, or its saga is within its deadline (plus a grace);
- per order, captured - refunded is 0 or the order total: the total for an approved order,
  0 for a rejected or cancelled one; at most one capture per order;
- stock on hand and reserved are never negative, reserved ≤ on hand, no reservation is
  left held for a rejected or cancelled order, a cancelled order's units are back on
  hand (its reservation not left committed), and an approved order's have left it (its
  reservation committed, not held or released);
- a shipment exists (not cancelled) only for an approved order (or one still in flight);
- at most one notification per order and kind;
- every outbox publishes within a bound: no unpublished row older than it;
- order_history says what orders says: the same status and total per order;
- every approved order has a shipment, released to the carrier, and no shipment is overdue
  by the carrier's own clock;
- the payment provider's captured charges match the approved orders: exactly one captured
  charge of the order's total per approved order, none for any other, none unknown to
  payments;
- the mail sink received at most one email per order and kind.

Rules that compare an order with what other services made of it judge only settled orders
(unchanged for the grace): the others may still be catching up.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

TERMINAL = ("APPROVED", "REJECTED", "CANCELLED")
# The monolith's checkouts charge the same provider under keys of their own (legacy.domain.
# charge_key): those charges are the monolith's to explain (`mercato legacy check`).
LEGACY_CHARGE_PREFIX = "legacy-checkout:"

Row = Any  # an asyncpg.Record or a dict: read by key


@dataclass(frozen=True)
class Violation:
    invariant: str
    subject: str
    detail: str


@dataclass
class Sources:
    """What the newer rules read; None (or empty) where the platform has no such source."""

    outboxes: list[dict[str, Any]] = field(default_factory=list)
    outbox_bound_s: float = 30.0
    history: list[Row] | None = None
    payments: list[Row] = field(default_factory=list)
    charges: list[dict[str, Any]] | None = None
    mails: list[dict[str, Any]] | None = None
    grace_s: float = 30.0


def evaluate(*, orders: list[Row], stuck: list[Row], ledger: list[Row], stock: list[Row],
             held: list[Row], shipments: list[Row], notes: list[Row],
             sources: Sources | None = None) -> list[Violation]:
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
        elif (row["status"] in ("reserved", "released") and order["status"] == "APPROVED"
              and _settled(order)):
            # Its units were shipped, so they must have left stock: a reservation still held
            # would expire and give them back, one released already has (ADR 0054).
            found.append(Violation("an approved order's units have left stock", order["id"],
                                   f"reservation {row['reservation_id']} {row['status']}, "
                                   "never committed (its OrderApproved unread by inventory?)"))
    for row in shipments:
        order = by_id.get(row["order_id"])
        if (row["status"] != "CANCELLED" and order is not None
                and order["status"] in ("REJECTED", "CANCELLED")):
            found.append(Violation("a shipment only for an approved order", order["id"],
                                   f"shipment {row['shipment_id']} is {row['status']}, "
                                   f"order {order['status']}"))
    for row in notes:
        found.append(Violation("one notification per order and kind", row["order_id"],
                               f"{row['n']} x {row['kind']}"))
    if sources is not None:
        found += outboxes_published(sources)
        found += history_matches(orders, sources)
        found += shipments_follow_approvals(orders, shipments, sources)
        found += provider_matches(orders, sources)
        found += one_email_per_notification(sources)
    return found


def _settled(order: Row) -> bool:
    return bool(order.get("settled", True))


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def outboxes_published(src: Sources) -> list[Violation]:
    return [Violation("every outbox publishes within a bound", f"{o['service']} outbox",
                      f"{o['unpublished']} row(s) unpublished, the oldest for "
                      f"{o['oldest_s']:.0f} s (bound {src.outbox_bound_s:g} s): is its relay "
                      f"running and NATS up? (mercato logs {o['service']})")
            for o in src.outboxes
            if o["unpublished"] and o["oldest_s"] > src.outbox_bound_s]


def history_matches(orders: list[Row], src: Sources) -> list[Violation]:
    if src.history is None:
        return []
    invariant = "order_history matches orders"
    views = {v["order_id"]: v for v in src.history}
    found: list[Violation] = []
    for order in orders:
        if not _settled(order):
            continue
        view = views.get(order["id"])
        if view is None:
            found.append(Violation(invariant, order["id"],
                                   f"order {order['status']} is missing from order_history"))
            continue
        if view["status"] != order["status"]:
            found.append(Violation(invariant, order["id"], f"order_history says "
                                   f"{view['status']}, orders says {order['status']}"))
        if view["total"] is None or Decimal(view["total"]) != Decimal(order["total"]):
            found.append(Violation(invariant, order["id"], f"order_history total "
                                   f"{view['total']}, orders total {order['total']}"))
    known = {o["id"] for o in orders}
    for order_id in sorted(set(views) - known):
        found.append(Violation(invariant, order_id, f"order_history has an order "
                               f"({views[order_id]['status']}) that orders does not"))
    return found


def shipments_follow_approvals(orders: list[Row], shipments: list[Row],
                               src: Sources) -> list[Violation]:
    """Every settled approved order has a live shipment released to the carrier; no
    shipment's next move (the carrier's clock: dispatch 30 s after the release, then in
    transit and delivered) is late by more than the grace."""
    found: list[Violation] = []
    by_order: dict[str, list[Row]] = defaultdict(list)
    for row in shipments:
        by_order[row["order_id"]].append(row)
    for order in orders:
        if order["status"] != "APPROVED" or not _settled(order):
            continue
        live = [s for s in by_order.get(order["id"], []) if s["status"] != "CANCELLED"]
        if not live:
            what = ("only a cancelled one" if by_order.get(order["id"]) else "none")
            found.append(Violation("every approved order has a shipment", order["id"],
                                   f"approved, but shipping has {what}"))
            continue
        for s in live:
            if s["status"] == "CREATED" and s["next_move_at"] is None:
                found.append(Violation("every approved order has a shipment", order["id"],
                                       f"shipment {s['shipment_id']} was never released to "
                                       "the carrier (its OrderApproved unread by shipping?)"))
    for s in shipments:
        if s["next_move_at"] is not None and s["late_s"] is not None \
                and float(s["late_s"]) > src.grace_s:
            found.append(Violation("no shipment overdue", s["order_id"],
                                   f"shipment {s['shipment_id']} is {s['status']}; the carrier "
                                   f"was due to move it {float(s['late_s']):.0f} s ago "
                                   f"({s['next_move_at']}): is shipping's carrier running?"))
    return found


def provider_matches(orders: list[Row], src: Sources) -> list[Violation]:
    """The provider's captured charges, by order (charge key = payment id -> order)."""
    if src.charges is None:
        return []
    invariant = "the provider's captures match the approved orders"
    order_of = {p["payment_id"]: p["order_id"] for p in src.payments}
    captured: dict[str, list[dict[str, Any]]] = defaultdict(list)
    found: list[Violation] = []
    for charge in src.charges:
        if charge.get("status") != "captured" or str(
                charge.get("idempotency_key") or "").startswith(LEGACY_CHARGE_PREFIX):
            continue
        order_id = order_of.get(charge.get("idempotency_key"))
        if order_id is None:
            found.append(Violation(invariant, str(charge.get("id")),
                                   f"captured {charge.get('amount')} {charge.get('currency')} "
                                   f"under key {charge.get('idempotency_key')!r}, which "
                                   "payments has no payment for"))
            continue
        captured[order_id].append(charge)
    for order in orders:
        mine = captured.get(order["id"], [])
        if len(mine) > 1:
            found.append(Violation(invariant, order["id"], f"{len(mine)} captured charges at "
                                   "the provider: " + ", ".join(c["id"] for c in mine)))
        if not _settled(order):
            continue
        if order["status"] == "APPROVED":
            if not mine:
                found.append(Violation(invariant, order["id"],
                                       "approved, but the provider holds no captured charge"))
            elif len(mine) == 1 and _decimal(mine[0]["amount"]) != Decimal(order["total"]):
                found.append(Violation(invariant, order["id"], f"captured "
                                       f"{mine[0]['amount']} at the provider, order total "
                                       f"{order['total']}"))
        elif order["status"] in ("REJECTED", "CANCELLED") and mine:
            found.append(Violation(invariant, order["id"], f"order {order['status']}, but the "
                                   f"provider still holds captured charge {mine[0]['id']}"))
    return found


def one_email_per_notification(src: Sources) -> list[Violation]:
    """Each email names its notification (X-Mercato-Notification: order/kind)."""
    if src.mails is None:
        return []
    counts = Counter(m["notification"] for m in src.mails if m.get("notification"))
    found = []
    for notification, n in sorted(counts.items()):
        if n > 1:
            order_id, _, kind = notification.rpartition("/")
            found.append(Violation("the mail sink got one email per order and kind", order_id,
                                   f"{n} emails {kind} (a sender crash leaves at most one "
                                   "extra per crash; see docs/operations.md)"))
    return found
