"""The stock split's conservation rules (ADR 0034) over rows: each break is named by the
ledger that does not add up."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from mercato.migration.stock.check import judge

START = datetime(2026, 1, 1, tzinfo=UTC)
T1, T2 = uuid.uuid4(), uuid.uuid4()


def world(**change: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """10 units at the start, 4 moved to the services and 1 back (done), 2 sold here, 1
    there, 3 received here: 10 - 4 + 1 - 2 + 3 = 8 here, 4 - 1 - 1 = 2 there."""
    legacy = {
        "split": [{"product_id": 1, "sku": "LG-1", "started_legacy": 10,
                   "started_services": 0, "started_at": START,
                   "on_hand": change.get("legacy_on_hand", 8)}],
        "moves": [{"product_id": 1, "kind": "transfer",
                   "units": change.get("transfer_moves", -3)},
                  {"product_id": 1, "kind": "sale", "units": -2},
                  {"product_id": 1, "kind": "receipt", "units": 3}],
        "transfers": [
            {"id": T1, "product_id": 1, "direction": "to_services", "quantity": 4,
             "state": "done"},
            {"id": T2, "product_id": 1, "direction": "to_legacy", "quantity": 1,
             "state": change.get("t2_state", "done")}],
    }
    inventory = {"stock": {"LG-1": {"on_hand": change.get("services_on_hand", 2),
                                    "reserved": 0}},
                 "adjustments": [{"adjustment_id": str(T1), "sku": "LG-1", "delta": 4},
                                 {"adjustment_id": str(T2), "sku": "LG-1", "delta": -1},
                                 *change.get("more", [])],
                 "sold": {"LG-1": 1}}
    return legacy, inventory


def test_a_balanced_split_holds_and_adds_up() -> None:
    [u], broken = judge(*world())
    assert broken == []
    assert (u.started, u.legacy, u.services, u.sold_legacy, u.sold_services, u.receipts,
            u.in_flight) == (10, 8, 2, 2, 1, 3, 0)


def test_a_transfer_half_done_is_in_flight_not_lost() -> None:
    # Back to the monolith: debited there, not yet credited here (a crash in between).
    [u], broken = judge(*world(t2_state="pending", legacy_on_hand=7, transfer_moves=-4))
    assert broken == [] and u.in_flight == 1
    # Credited here but the log still says pending: the credit had no transfer behind it.
    _, broken = judge(*world(t2_state="pending"))
    assert {v.invariant for v in broken} == {"stock.split.transfer",
                                            "stock.split.conservation"}


def test_each_planted_break_is_named() -> None:
    _, broken = judge(*world(services_on_hand=3))
    assert {v.invariant for v in broken} == {"stock.split.services_ledger",
                                            "stock.split.conservation"}
    _, broken = judge(*world(legacy_on_hand=9))
    assert {v.invariant for v in broken} == {"stock.split.legacy_ledger",
                                            "stock.split.conservation"}
    _, broken = judge(*world(more=[{"adjustment_id": "x", "sku": "LG-1", "delta": 1}],
                             services_on_hand=3))
    assert "stock.split.transfer" in {v.invariant for v in broken}
    _, broken = judge(*world(t2_state="failed", legacy_on_hand=7))
    assert "stock.split.transfer" in {v.invariant for v in broken}
    _, broken = judge(*world(legacy_on_hand=-1))
    assert "stock.split.negative" in {v.invariant for v in broken}
