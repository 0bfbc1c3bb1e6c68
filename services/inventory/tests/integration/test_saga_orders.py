"""Property: whatever order and duplication the broker delivers a saga's commands in, the
stock ends the same as with in-order, exactly-once delivery, and never goes negative.

Each reservation is Reserve then Commit, or Reserve then Release (the saga never sends both).
A Commit is only sent after StockReserved, so it never overtakes its Reserve; a Release is a
timeout's compensation and may overtake it. Duplicates come in both kinds: redeliveries of
one message (same id: the inbox drops them) and re-sent commands (new id: the handlers must
be idempotent per reservation).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from chassis.db import Database
from chassis.messaging.consumer import Outcome
from chassis.messaging.envelope import Envelope
from contracts.inventory.v1 import CommitReservation, ReleaseStock, ReserveStock, StockLine
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from inventory_kit import Inventory, delivery, envelope

pytestmark = pytest.mark.integration

SKUS = ["SKU-A", "SKU-B", "SKU-C"]
ON_HAND = 100  # ample: at most 6 reservations x 3 lines x 3 units per SKU

lines = st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 3)), min_size=1, max_size=3)
plans = st.lists(st.tuples(lines, st.sampled_from(["commit", "release"])),
                 min_size=1, max_size=6)


@dataclass(frozen=True)
class Sent:
    kind: str  # reserve | commit | release
    reservation_id: str
    env: Envelope


def in_order(plan: list[tuple[list[tuple[str, int]], str]]) -> list[Sent]:
    sent: list[Sent] = []
    for i, (wanted, end) in enumerate(plan):
        rid = f"res-{i}"
        sent.append(Sent("reserve", rid, envelope(ReserveStock(
            reservation_id=rid, order_id=f"order-{i}",
            lines=[StockLine(sku=s, quantity=q) for s, q in wanted]))))
        ending = (CommitReservation(reservation_id=rid) if end == "commit"
                  else ReleaseStock(reservation_id=rid, reason="payment_declined"))
        sent.append(Sent(end, rid, envelope(ending)))
    return sent


def shuffled(data: st.DataObject, sent: list[Sent]) -> list[Sent]:
    """Add redeliveries (same id) and re-sends (new id), then interleave them at random,
    keeping each Commit after the first Reserve of its reservation."""
    copies: list[Sent] = []
    for s in sent:
        copies += [s] * (1 + data.draw(st.integers(0, 2), label="redeliveries"))
        for _ in range(data.draw(st.integers(0, 1), label="re-sends")):
            resent = Envelope.new(s.env.subject, s.env.message_type, s.env.payload)
            copies += [Sent(s.kind, s.reservation_id, resent)]
    order: list[Sent] = []
    for s in (c for c in copies if c.kind != "commit"):
        order.insert(data.draw(st.integers(0, len(order))), s)
    for s in (c for c in copies if c.kind == "commit"):
        first_reserve = next(i for i, o in enumerate(order)
                             if o.kind == "reserve" and o.reservation_id == s.reservation_id)
        order.insert(data.draw(st.integers(first_reserve + 1, len(order))), s)
    seen: set[str] = set()
    for s in order:  # label the interesting cases (see --hypothesis-show-statistics)
        if s.kind == "reserve":
            seen.add(s.reservation_id)
        elif s.kind == "release" and s.reservation_id not in seen:
            event("a release overtook its reserve")
    if len({s.env.message_id for s in order}) > len(sent):
        event("a command was re-sent under a new id")
    return order


async def run(inv: Inventory, sent: list[Sent]) -> tuple[dict, dict]:
    await inv.reset()
    await inv.seed(**dict.fromkeys(SKUS, ON_HAND))
    outcomes = [await inv.send(delivery(s.env, sequence=n)) for n, s in enumerate(sent, 1)]
    # A repeat is acked as a duplicate (same id) or dropped (re-sent, nothing left to do);
    # nothing is retried or dead-lettered.
    assert set(outcomes) <= {Outcome.HANDLED, Outcome.DUPLICATE, Outcome.DROPPED}, outcomes
    levels = await inv.levels()
    assert all(on_hand >= 0 and 0 <= reserved <= on_hand
               for on_hand, reserved in levels.values())
    return levels, await inv.statuses()


def expected(plan: list[tuple[list[tuple[str, int]], str]]) -> tuple[dict, dict]:
    on_hand = dict.fromkeys(SKUS, ON_HAND)
    for wanted, end in plan:
        if end == "commit":
            for sku, qty in wanted:
                on_hand[sku] -= qty
    statuses = {f"res-{i}": "committed" if end == "commit" else "released"
                for i, (_, end) in enumerate(plan)}
    return {sku: (n, 0) for sku, n in on_hand.items()}, statuses


@pytest.fixture
def saga_db(database_url: str) -> Iterator[tuple[asyncio.Runner, Inventory]]:
    """One database for every example (each run resets it) and one event loop to drive it:
    a sync test, since Hypothesis calls it once per example."""
    with asyncio.Runner() as runner:
        db = Database(database_url)
        try:
            yield runner, Inventory(db)
        finally:
            runner.run(db.dispose())


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=plans, data=st.data())
def test_any_delivery_order_with_duplicates_ends_like_in_order(
        saga_db: tuple[asyncio.Runner, Inventory],
        plan: list[tuple[list[tuple[str, int]], str]], data: st.DataObject) -> None:
    runner, inv = saga_db
    sent = in_order(plan)
    reference = runner.run(run(inv, sent))
    assert reference == expected(plan)
    assert runner.run(run(inv, shuffled(data, sent))) == reference
