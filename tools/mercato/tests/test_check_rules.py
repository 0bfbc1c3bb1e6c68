"""`mercato check`'s rules over rows as the services' databases hold them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from mercato.check import evaluate


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


def test_shipments_stock_and_notifications() -> None:
    found = run([order("r", "REJECTED")],
                stock=[{"sku": "MUG", "on_hand": -1, "reserved": 0}],
                shipments=[{"shipment_id": "s", "order_id": "r", "status": "CREATED"}],
                notes=[{"order_id": "r", "kind": "order_rejected", "n": 2}])
    assert found == [("stock never negative", "MUG"),
                     ("a shipment only for an approved order", "r"),
                     ("one notification per order and kind", "r")]
