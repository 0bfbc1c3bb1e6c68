"""`mercato check`'s rules over rows as the services' databases hold them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from mercato.check import evaluate
from mercato.invariants import Sources


def run(orders: list[dict], **rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    tables = {"stuck": [], "ledger": [], "stock": [], "held": [], "shipments": [], "notes": []}
    tables.update(rows)
    return [(v.invariant, v.subject) for v in evaluate(orders=orders, **tables)]


def order(oid: str, status: str, total: str = "100") -> dict[str, Any]:
    return {"id": oid, "status": status, "total": Decimal(total)}


def money(oid: str, captured: str, refunded: str = "0", captures: int = 1) -> dict[str, Any]:
    return {"order_id": oid, "captured": Decimal(captured), "refunded": Decimal(refunded),
            "captures": captures}


def test_a_consistent_shop_has_no_violation() -> None:
    assert run([order("a", "APPROVED"), order("r", "REJECTED"), order("c", "CANCELLED"),
                order("p", "PENDING")],
               ledger=[money("a", "100"), money("r", "0", captures=0),
                       money("c", "100", "100"), money("p", "100")],
               held=[{"reservation_id": "a", "order_id": "a", "status": "committed"},
                     {"reservation_id": "p", "order_id": "p", "status": "reserved"}]) == []


def test_money_must_match_the_orders_outcome() -> None:
    found = run([order("a", "APPROVED"), order("c", "CANCELLED"), order("r", "REJECTED"),
                 order("n", "APPROVED")],
                ledger=[money("a", "50"), money("c", "100"), money("r", "100", captures=2)])
    assert found == [("captured - refunded is 0 or the total", "a"),
                     ("captured - refunded is 0 or the total", "c"),
                     ("at most one capture per order", "r"),
                     ("captured - refunded is 0 or the total", "r"),
                     ("captured - refunded is 0 or the total", "n")]


def test_stock_of_a_rejected_or_cancelled_order_is_not_kept() -> None:
    found = run([order("r", "REJECTED"), order("c", "CANCELLED"), order("a", "APPROVED")],
                ledger=[money("a", "100")],
                held=[{"reservation_id": "r", "order_id": "r", "status": "reserved"},
                      {"reservation_id": "c", "order_id": "c", "status": "committed"},
                      {"reservation_id": "a", "order_id": "a", "status": "committed"}])
    assert found == [("no reservation held for a rejected/cancelled order", "r"),
                     ("a cancelled order's units are back on hand", "c")]


def test_an_approved_orders_units_have_left_stock() -> None:
    """ADR 0054: inventory commits on reading OrderApproved. A settled approved order's
    reservation still held (it would expire and give shipped units back) or released is a
    violation; a young one may still be on its way."""
    found = run([order("held", "APPROVED"), order("gone", "APPROVED"),
                 order("ok", "APPROVED"), {**order("young", "APPROVED"), "settled": False}],
                ledger=[money(o, "100") for o in ("held", "gone", "ok", "young")],
                held=[{"reservation_id": "held", "order_id": "held", "status": "reserved"},
                      {"reservation_id": "gone", "order_id": "gone", "status": "released"},
                      {"reservation_id": "ok", "order_id": "ok", "status": "committed"},
                      {"reservation_id": "young", "order_id": "young", "status": "reserved"}])
    assert found == [("an approved order's units have left stock", "held"),
                     ("an approved order's units have left stock", "gone")]


def test_shipments_stock_and_notifications() -> None:
    found = run([order("r", "REJECTED")],
                stock=[{"sku": "MUG", "on_hand": -1, "reserved": 0}],
                shipments=[{"shipment_id": "s", "order_id": "r", "status": "CREATED"}],
                notes=[{"order_id": "r", "kind": "order_rejected", "n": 2}])
    assert found == [("stock never negative", "MUG"),
                     ("a shipment only for an approved order", "r"),
                     ("one notification per order and kind", "r")]


# -- the rules over the other services' and the simulators' data ----------------------------

def judged(orders: list[dict], *, shipments: list[dict] | None = None,
           **sources: Any) -> list[tuple[str, str, str]]:
    found = evaluate(orders=orders, stuck=[], ledger=[money(o["id"], o["total"])
                                                      for o in orders
                                                      if o["status"] == "APPROVED"],
                     stock=[], held=[], shipments=shipments or [], notes=[],
                     sources=Sources(**sources))
    return [(v.invariant, v.subject, v.detail) for v in found]


def settled(oid: str, status: str, total: str = "100", *, settled: bool = True) -> dict:
    return {**order(oid, status, total), "settled": settled}


def shipment(oid: str, status: str = "DISPATCHED", next_move_at: str | None = "t",
             late_s: float | None = -10.0) -> dict[str, Any]:
    return {"shipment_id": f"shp-{oid}", "order_id": oid, "status": status,
            "next_move_at": next_move_at, "late_s": late_s}


def test_an_outbox_row_older_than_the_bound_is_reported() -> None:
    found = judged([], outboxes=[{"service": "catalog", "unpublished": 3, "oldest_s": 95.2},
                                 {"service": "orders", "unpublished": 2, "oldest_s": 1.0},
                                 {"service": "shipping", "unpublished": 0, "oldest_s": 0.0}],
                   outbox_bound_s=30)
    assert found == [("every outbox publishes within a bound", "catalog outbox",
                      "3 row(s) unpublished, the oldest for 95 s (bound 30 s): is its relay "
                      "running and NATS up? (mercato logs catalog)")]


def test_order_history_must_say_what_orders_says() -> None:
    orders = [settled("a", "APPROVED"), settled("r", "REJECTED"), settled("m", "APPROVED"),
              settled("t", "APPROVED", "100.00"), settled("new", "APPROVED", settled=False)]
    history = [{"order_id": "a", "status": "PENDING", "total": Decimal("100")},
               {"order_id": "r", "status": "REJECTED", "total": Decimal("90")},
               {"order_id": "t", "status": "APPROVED", "total": Decimal("100")},
               {"order_id": "ghost", "status": "APPROVED", "total": Decimal("5")}]
    found = [(s, d) for i, s, d in judged(orders, history=history,
                                          shipments=[shipment(o["id"]) for o in orders])
             if i == "order_history matches orders"]
    assert found == [("a", "order_history says PENDING, orders says APPROVED"),
                     ("r", "order_history total 90, orders total 100"),
                     ("m", "order APPROVED is missing from order_history"),
                     ("ghost", "order_history has an order (APPROVED) that orders does not")]


def test_every_approved_order_has_a_released_shipment_none_overdue() -> None:
    orders = [settled("none", "APPROVED"), settled("gone", "APPROVED"),
              settled("held", "APPROVED"), settled("ok", "APPROVED"),
              settled("young", "APPROVED", settled=False)]
    shipments = [shipment("gone", "CANCELLED", None, None),
                 shipment("held", "CREATED", None, None), shipment("ok"),
                 shipment("late", "CREATED", "2026-12-01T10:00:00+00:00", 95.0)]
    assert [(i, s, d) for i, s, d in judged(orders, shipments=shipments, grace_s=30)
            if "shipment" in i] == [
        ("every approved order has a shipment", "none", "approved, but shipping has none"),
        ("every approved order has a shipment", "gone",
         "approved, but shipping has only a cancelled one"),
        ("every approved order has a shipment", "held",
         "shipment shp-held was never released to the carrier "
         "(its OrderApproved unread by shipping?)"),
        ("no shipment overdue", "late",
         "shipment shp-late is CREATED; the carrier was due to move it 95 s ago "
         "(2026-12-01T10:00:00+00:00): is shipping's carrier running?")]


def charge(cid: str, key: str, status: str = "captured", amount: str = "100") -> dict:
    return {"id": cid, "idempotency_key": key, "status": status, "amount": amount,
            "currency": "KRW"}


def test_the_providers_captures_match_the_approved_orders() -> None:
    orders = [settled("a", "APPROVED"), settled("twice", "APPROVED"),
              settled("none", "APPROVED"), settled("less", "APPROVED"),
              settled("r", "REJECTED"), settled("c", "CANCELLED"),
              settled("young", "APPROVED", settled=False), settled("p", "PENDING")]
    payments = [{"payment_id": f"pay-{o['id']}", "order_id": o["id"]} for o in orders]
    payments.append({"payment_id": "again-twice", "order_id": "twice"})
    charges = [charge("ch1", "pay-a"), charge("ch2", "pay-twice"), charge("ch3", "again-twice"),
               charge("ch4", "pay-less", amount="60"), charge("ch5", "pay-r"),
               charge("ch6", "pay-c", "refunded"), charge("ch7", "pay-p"),
               charge("ch8", "pay-young", "authorized"), charge("ch9", "by-hand"),
               charge("ch10", "by-hand-2", "authorized"),
               # The monolith's checkouts (`mercato legacy check` judges those).
               charge("ch11", "legacy-checkout:7:k1")]
    found = [(s, d) for i, s, d in judged(orders, payments=payments, charges=charges,
                                          shipments=[shipment(o["id"]) for o in orders])
             if i == "the provider's captures match the approved orders"]
    assert found == [
        ("ch9", "captured 100 KRW under key 'by-hand', which payments has no payment for"),
        ("twice", "2 captured charges at the provider: ch2, ch3"),
        ("none", "approved, but the provider holds no captured charge"),
        ("less", "captured 60 at the provider, order total 100"),
        ("r", "order REJECTED, but the provider still holds captured charge ch5")]


def test_the_mail_sink_gets_one_email_per_order_and_kind() -> None:
    mails = [{"notification": n} for n in ("o1/order_placed", "o1/order_approved",
                                           "o1/order_placed", "o2/order_placed")]
    mails.append({"notification": None})  # not one of ours
    assert judged([], mails=mails) == [(
        "the mail sink got one email per order and kind", "o1",
        "2 emails order_placed (a sender crash leaves at most one extra per crash; see "
        "docs/operations.md)")]


def test_a_consistent_platform_passes_every_newer_rule() -> None:
    orders = [settled("a", "APPROVED"), settled("r", "REJECTED"), settled("c", "CANCELLED")]
    assert judged(
        orders, shipments=[shipment("a", "DELIVERED", None, None),
                           shipment("c", "CANCELLED", None, None)],
        outboxes=[{"service": "orders", "unpublished": 1, "oldest_s": 0.2}],
        history=[{"order_id": o["id"], "status": o["status"], "total": o["total"]}
                 for o in orders],
        payments=[{"payment_id": f"pay-{o['id']}", "order_id": o["id"]} for o in orders],
        charges=[charge("ch1", "pay-a"), charge("ch2", "pay-r", "voided"),
                 charge("ch3", "pay-c", "refunded")],
        mails=[{"notification": "a/order_placed"}, {"notification": "a/order_approved"}]) == []
