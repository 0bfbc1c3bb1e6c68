"""Inventory commands and catalog events through the real inbox consumer and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
import pytest
from chassis.clock import utc_now
from chassis.db import Database
from chassis.logging import configure_logging
from chassis.messaging.consumer import Outcome
from chassis.messaging.envelope import Envelope
from chassis.tracing import configure_tracing
from contracts.base import Contract
from contracts.catalog.v1 import PriceChanged, ProductCreated, ProductDiscontinued
from contracts.inventory.v1 import (
    CommitReservation,
    ReleaseStock,
    ReserveStock,
    RestockReservation,
    StockLine,
)
from contracts.orders.v1 import OrderApproved
from inventory.domain.model import Policy
from inventory.service_layer.handlers import sweep_expired
from inventory_kit import Inventory, delivery, envelope
from opentelemetry import trace
from sqlalchemy import text

pytestmark = pytest.mark.integration


@pytest.fixture
def inv(db: Database) -> Inventory:
    return Inventory(db, Policy(reservation_ttl=timedelta(minutes=15), low_stock_threshold=5))


def reserve(rid: str, **lines: int) -> ReserveStock:
    return ReserveStock(reservation_id=rid, order_id=f"order-{rid}",
                        lines=[StockLine(sku=s, quantity=q) for s, q in lines.items()])


def types(events: list[dict]) -> list[str]:
    return [e["_type"] for e in events]


def json_logs(capsys: pytest.CaptureFixture[str]) -> Callable[[str], list[dict]]:
    """From now on, the service's JSON log lines as the chassis writes them, by event name.
    Call it inside the test itself: the captured stream of the setup phase is another."""
    configure_logging("inventory", "inventory-test")

    def read(event: str) -> list[dict]:
        lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()
                 if line.startswith("{")]
        return [line for line in lines if line.get("event") == event]

    return read


async def test_reserve_is_all_or_none(inv: Inventory) -> None:
    await inv.seed(MUG=5, TEA=1)
    assert await inv.send(reserve("r1", MUG=2, TEA=2)) == Outcome.HANDLED
    assert await inv.levels() == {"MUG": (5, 0), "TEA": (1, 0)}
    [failed] = await inv.events("StockReservationFailed.v1")
    assert failed["reason"] == "insufficient_stock" and failed["short_skus"] == ["TEA"]
    assert failed["order_id"] == "order-r1"

    assert await inv.send(reserve("r2", MUG=2, TEA=1)) == Outcome.HANDLED
    assert await inv.levels() == {"MUG": (5, 2), "TEA": (1, 1)}
    [reserved] = await inv.events("StockReserved.v1")
    assert reserved["lines"] == [{"sku": "MUG", "quantity": 2}, {"sku": "TEA", "quantity": 1}]
    assert reserved["expires_at"] > utc_now().isoformat()
    assert await inv.statuses() == {"r1": "failed", "r2": "reserved"}


async def test_unknown_sku_fails_the_reservation(inv: Inventory) -> None:
    await inv.seed(MUG=5)
    await inv.send(reserve("r1", MUG=1, GHOST=1))
    assert await inv.levels() == {"MUG": (5, 0)}
    [failed] = await inv.events("StockReservationFailed.v1")
    assert failed["short_skus"] == ["GHOST"]


async def test_stock_low_is_published_when_availability_drops_below_threshold(
        inv: Inventory) -> None:
    await inv.seed(MUG=7)
    await inv.send(reserve("r1", MUG=2))  # 7 -> 5: not below 5
    assert await inv.events("StockLow.v1") == []
    await inv.send(reserve("r2", MUG=1))  # 5 -> 4: crosses
    await inv.send(reserve("r3", MUG=1))  # 4 -> 3: still low, no new event
    [low] = await inv.events("StockLow.v1")
    assert (low["sku"], low["available"], low["threshold"]) == ("MUG", 4, 5)


async def test_repeated_reserve_changes_nothing_and_reannounces(inv: Inventory) -> None:
    await inv.seed(MUG=5)
    first = envelope(reserve("r1", MUG=2))
    assert await inv.send(delivery(first)) == Outcome.HANDLED
    assert await inv.send(delivery(first)) == Outcome.DUPLICATE  # same message id
    assert await inv.send(reserve("r1", MUG=2)) == Outcome.HANDLED  # re-sent: new id
    assert await inv.levels() == {"MUG": (5, 2)}
    announced = await inv.events("StockReserved.v1")
    assert len(announced) == 2 and announced[0] == announced[1]


async def test_release_returns_units_and_is_idempotent(inv: Inventory) -> None:
    await inv.seed(MUG=5)
    await inv.send(reserve("r1", MUG=3))
    await inv.send(ReleaseStock(reservation_id="r1", reason="payment_declined"))
    await inv.send(ReleaseStock(reservation_id="r1", reason="again"))
    assert await inv.levels() == {"MUG": (5, 0)}
    [released] = await inv.events("StockReleased.v1")
    assert released == {"reservation_id": "r1", "order_id": "order-r1",
                        "reason": "payment_declined", "_type": "StockReleased.v1"}
    await inv.send(CommitReservation(reservation_id="r1"))  # too late: no-op
    assert await inv.levels() == {"MUG": (5, 0)}
    assert await inv.statuses() == {"r1": "released"}


async def test_release_before_reserve_leaves_a_tombstone_that_refuses_it(
        inv: Inventory) -> None:
    await inv.seed(MUG=5)
    await inv.send(ReleaseStock(reservation_id="r1", reason="saga_timeout"))
    [released] = await inv.events("StockReleased.v1")
    assert released["reason"] == "saga_timeout"
    await inv.send(reserve("r1", MUG=2))
    assert await inv.levels() == {"MUG": (5, 0)}
    [refused] = await inv.events("StockReservationFailed.v1")
    assert refused["reason"] == "reservation_released"
    assert await inv.statuses() == {"r1": "released"}


async def test_commit_ships_once_and_cannot_be_released(inv: Inventory) -> None:
    await inv.seed(MUG=10)
    await inv.send(reserve("r1", MUG=2))
    await inv.send(CommitReservation(reservation_id="r1"))
    await inv.send(CommitReservation(reservation_id="r1"))
    await inv.send(ReleaseStock(reservation_id="r1"))
    assert await inv.levels() == {"MUG": (8, 0)}
    assert types(await inv.events()) == ["StockReserved.v1", "ReservationCommitted.v1"]
    assert await inv.statuses() == {"r1": "committed"}


async def test_restock_returns_committed_units_once(inv: Inventory) -> None:
    await inv.seed(MUG=10)
    await inv.send(reserve("r1", MUG=2))
    await inv.send(CommitReservation(reservation_id="r1"))
    assert await inv.levels() == {"MUG": (8, 0)}
    restock = RestockReservation(reservation_id="r1", reason="cancelled_by_customer")
    await inv.send(restock)
    await inv.send(restock)
    await inv.send(CommitReservation(reservation_id="r1"))  # a stale commit: no-op
    assert await inv.levels() == {"MUG": (10, 0)}
    assert await inv.statuses() == {"r1": "restocked"}
    assert types(await inv.events()) == ["StockReserved.v1", "ReservationCommitted.v1",
                                         "StockReleased.v1"]
    [released] = await inv.events("StockReleased.v1")
    assert released["reason"] == "cancelled_by_customer"


async def test_restock_overtaking_its_commit_releases_and_the_commit_is_ignored(
        inv: Inventory) -> None:
    await inv.seed(MUG=10)
    await inv.send(reserve("r1", MUG=2))
    await inv.send(RestockReservation(reservation_id="r1"))
    await inv.send(CommitReservation(reservation_id="r1"))
    await inv.send(RestockReservation(reservation_id="unknown"))
    assert await inv.levels() == {"MUG": (10, 0)}
    assert await inv.statuses() == {"r1": "released"}


def approved(rid: str | None, order_id: str = "o1") -> OrderApproved:
    return OrderApproved(order_id=order_id, customer_id="c1", total="100", currency="EUR",
                         reservation_id=rid, shipment_id=f"shp-{order_id}")


async def test_an_order_approval_commits_its_reservation_once(inv: Inventory) -> None:
    """ADR 0054: the approval is the commit; a redelivery or a re-published approval, and a
    late release, change nothing."""
    await inv.seed(MUG=10)
    await inv.send(reserve("r1", MUG=2))
    approval = envelope(approved("r1"))
    assert await inv.send(delivery(approval)) == Outcome.HANDLED
    assert await inv.send(delivery(approval, 2)) == Outcome.DUPLICATE
    assert await inv.send(approved("r1")) == Outcome.DROPPED
    await inv.send(ReleaseStock(reservation_id="r1"))
    assert await inv.levels() == {"MUG": (8, 0)}
    assert await inv.statuses() == {"r1": "committed"}
    [committed] = await inv.events("ReservationCommitted.v1")
    assert committed["reservation_id"] == "r1"


async def test_an_approval_from_before_adr_0054_commits_nothing(inv: Inventory) -> None:
    """Its order sent CommitReservation: the approval itself names no reservation."""
    await inv.seed(MUG=10)
    await inv.send(reserve("r1", MUG=2))
    assert await inv.send(approved(None)) == Outcome.HANDLED
    assert await inv.levels() == {"MUG": (10, 2)}
    assert await inv.statuses() == {"r1": "reserved"}
    assert types(await inv.events()) == ["StockReserved.v1"]


async def test_a_restock_overtaking_the_approval_releases_and_the_approval_is_ignored(
        inv: Inventory) -> None:
    """The approval travels on the orders' stream, a cancel's restock on inventory's: read
    by two consumers, the restock can come first. The units go back once either way."""
    await inv.seed(MUG=10)
    await inv.send(reserve("r1", MUG=2))
    await inv.send(RestockReservation(reservation_id="r1", reason="cancelled_by_customer"))
    assert await inv.send(approved("r1")) == Outcome.DROPPED
    assert await inv.levels() == {"MUG": (10, 0)}
    assert await inv.statuses() == {"r1": "released"}


async def test_commit_of_unknown_or_failed_reservation_changes_nothing(
        inv: Inventory, capsys: pytest.CaptureFixture[str]) -> None:
    logs = json_logs(capsys)
    await inv.seed(MUG=1)
    await inv.send(reserve("r1", MUG=2))  # fails
    assert await inv.send(CommitReservation(reservation_id="r1")) == Outcome.DROPPED
    assert await inv.send(CommitReservation(reservation_id="nope")) == Outcome.DROPPED
    assert await inv.levels() == {"MUG": (1, 0)}
    assert await inv.statuses() == {"r1": "failed"}  # no row for "nope"
    warned = logs("message_dropped")
    assert [(w["level"], w["reason"], w["detail"]) for w in warned] == [
        ("warning", "commit_of_unreserved", "reservation r1 is failed"),
        ("warning", "commit_of_unreserved", "reservation nope is unknown")]
    assert types(await inv.events()) == ["StockReservationFailed.v1"]


async def test_invalid_command_is_dead_lettered_on_its_first_delivery(inv: Inventory) -> None:
    bad = Envelope.new(ReserveStock.subject(), ReserveStock.message_type(),
                       {"reservation_id": "r1", "lines": []})
    first = delivery(bad)
    assert await inv.send(first) == Outcome.DEAD_LETTERED and first.state == "acked"
    assert [m.subject for m in inv.dead_letters.messages] == ["dlq.inventory-commands"]
    too_long = Envelope.new(ReleaseStock.subject(), ReleaseStock.message_type(),
                            {"reservation_id": "x" * 201})
    assert await inv.send(delivery(too_long)) == Outcome.DEAD_LETTERED
    assert await inv.statuses() == {}


async def test_concurrent_reserves_never_oversell(inv: Inventory, db: Database) -> None:
    await inv.seed(HOT=10)
    lowest: list[int] = []
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set():
            async with db.engine.connect() as conn:
                lowest.append((await conn.execute(text(
                    "SELECT on_hand - reserved FROM stock WHERE sku = 'HOT'"))).scalar_one())
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    outcomes = await asyncio.gather(*(inv.send(reserve(f"r{i}", HOT=1)) for i in range(50)))
    done.set()
    await watcher
    assert outcomes == [Outcome.HANDLED] * 50
    assert await inv.levels() == {"HOT": (10, 10)}
    assert len(await inv.events("StockReserved.v1")) == 10
    assert len(await inv.events("StockReservationFailed.v1")) == 40
    assert len(await inv.events("StockLow.v1")) == 1
    assert lowest and min(lowest) >= 0


async def test_a_batch_reads_what_its_earlier_messages_wrote(
        inv: Inventory, capsys: pytest.CaptureFixture[str]) -> None:
    """One consumer batch is one transaction, and a command's writes wait for the commit
    (ADR 0052): the second reserve of the last unit must still see the first one's, a release
    its reserve, a commit the release. Without the writes before each read, both reserves
    held the last unit, and the release found no reservation (its tombstone then failed the
    batch's commit, handled again message by message)."""
    logs = json_logs(capsys)
    await inv.seed(LAST=1, MUG=5)

    async def batch(*messages: Contract) -> list[str]:
        # One correlation id: the batch keeps the messages in this order.
        envelopes = [Envelope.new(m.subject(), m.message_type(), m.to_payload(),
                                  correlation_id="one-batch") for m in messages]
        return await inv.commands.process_batch(
            [delivery(e, n) for n, e in enumerate(envelopes, 1)])

    assert await batch(reserve("r1", LAST=1), reserve("r2", LAST=1)) == [Outcome.HANDLED] * 2
    assert await inv.statuses() == {"r1": "reserved", "r2": "failed"}
    assert await batch(reserve("r3", MUG=2),
                       ReleaseStock(reservation_id="r3", reason="payment_declined"),
                       CommitReservation(reservation_id="r3"), reserve("r4", MUG=5),
                       CommitReservation(reservation_id="r4")) == [
        Outcome.HANDLED, Outcome.HANDLED, Outcome.DROPPED, Outcome.HANDLED, Outcome.HANDLED]
    assert not logs("batch_fell_back_to_single")
    assert await inv.statuses() == {"r1": "reserved", "r2": "failed", "r3": "released",
                                    "r4": "committed"}
    assert await inv.levels() == {"LAST": (1, 1), "MUG": (0, 0)}


async def test_a_command_writes_once_at_commit(inv: Inventory, pg_server: Any,
                                               database_url: str) -> None:
    """A reserve's changes (the reservation, its lines, the stock) and its reply go out as
    one statement before the COMMIT, as do a release's and a commit's (ADR 0052): the round
    trips of a command are its inbox claim with its lock, its reads (a reservation with its
    lines, ADR 0055; the stock), one write and the COMMIT."""
    await inv.seed(MUG=5)
    with pg_server.statements_logged(database_url.rsplit("/", 1)[1]) as logged:
        one = Database(database_url, pool_size=1)
        try:
            pid = (await one.fetch_once("SELECT pg_backend_pid() AS pid"))[0]["pid"]
            alone = Inventory(one, inv.policy)
            sent: dict[str, list[str]] = {}
            # The first round warms the connection (asyncpg asks for the types it meets).
            for rid, tombstone in (("r0", "t0"), ("r1", "t1")):
                for name, message in (("reserve", reserve(rid, MUG=1)),
                                      ("commit", CommitReservation(reservation_id=rid)),
                                      ("release", ReleaseStock(reservation_id=tombstone)),
                                      ("approval", reserve(f"a{rid}", MUG=1)),
                                      ("approval", approved(f"a{rid}", f"o{rid}"))):
                    before = len(logged(pid))
                    assert await alone.send(message) == Outcome.HANDLED
                    sent[name] = [" ".join(s.split(": ", 1)[1].split())
                                  for s in logged(pid)[before:]]
        finally:
            await one.dispose()
    writes = {name: [s for s in statements if s.startswith(("BEGIN;", "WITH", "INSERT", "UPDATE"))]
              for name, statements in sent.items()}
    # The reservation's lock and the inbox claim ride on the BEGIN; every other write is in
    # the one statement. The approval (ADR 0054) is a commit read from the orders' stream.
    assert [len(w) for w in writes.values()] == [2, 2, 2, 2], sent
    assert [w[0].split(" INSERT INTO inbox")[0] for w in writes.values()] == [
        "BEGIN; SELECT pg_advisory_xact_lock(7243, hashtext('r1'));",
        "BEGIN; SELECT pg_advisory_xact_lock(7243, hashtext('r1'));",
        "BEGIN; SELECT pg_advisory_xact_lock(7243, hashtext('t1'));",
        "BEGIN; SELECT pg_advisory_xact_lock(7243, hashtext('ar1'));"], writes
    reserve_write, commit_write, release_write, approval = (w[1] for w in writes.values())
    assert all(part in approval for part in ("UPDATE stock", "UPDATE reservations")), approval
    assert all(part in reserve_write for part in (
        "INSERT INTO reservations", "INSERT INTO reservation_lines", "UPDATE stock",
        "INSERT INTO outbox")), reserve_write
    assert all(part in commit_write for part in (
        "UPDATE stock", "UPDATE reservations", "INSERT INTO outbox")), commit_write
    assert all(part in release_write for part in (  # an unknown reservation's tombstone
        "INSERT INTO reservations", "INSERT INTO outbox")), release_write
    assert [len(s) for s in sent.values()] == [5, 5, 4, 5], sent
    assert not [s for sent_by in sent.values() for s in sent_by
                if s.startswith("SELECT reservation_id, sku")], sent
    assert await inv.levels() == {"MUG": (1, 0)}
    assert await inv.statuses() == {"r0": "committed", "r1": "committed", "t0": "released",
                                    "t1": "released", "ar0": "committed", "ar1": "committed"}


async def test_expiry_releases_once_even_with_two_sweepers(inv: Inventory, db: Database) -> None:
    await inv.seed(MUG=5)
    await inv.send(reserve("r1", MUG=2))
    await inv.send(reserve("r2", MUG=1))
    await inv.send(CommitReservation(reservation_id="r2"))  # committed: never expires
    assert await sweep_expired(db.unit_of_work()) == 0  # not due yet
    later = utc_now() + timedelta(minutes=16)
    released = await asyncio.gather(sweep_expired(db.unit_of_work(), now=later),
                                    sweep_expired(db.unit_of_work(), now=later))
    assert sorted(released) == [0, 1]
    assert await inv.levels() == {"MUG": (4, 0)}
    assert await inv.statuses() == {"r1": "released", "r2": "committed"}
    [expired] = await inv.events("StockReleased.v1")
    assert (expired["reservation_id"], expired["reason"]) == ("r1", "expired")
    # The saga's late commands find it released: nothing changes.
    await inv.send(CommitReservation(reservation_id="r1"))
    await inv.send(ReleaseStock(reservation_id="r1"))
    assert await inv.levels() == {"MUG": (4, 0)}
    assert len(await inv.events("StockReleased.v1")) == 1


async def test_sweep_is_batched_and_skips_rows_a_command_holds(inv: Inventory,
                                                               db: Database) -> None:
    await inv.seed(MUG=50)
    for i in range(5):
        await inv.send(reserve(f"r{i}", MUG=1))
    later = utc_now() + timedelta(hours=1)
    async with db.unit_of_work() as holder:  # a command working on r0 right now
        await holder.session.execute(text(
            "SELECT 1 FROM reservations WHERE reservation_id = 'r0' FOR UPDATE"))
        assert await sweep_expired(db.unit_of_work(), now=later, limit=2) == 2
        assert await sweep_expired(db.unit_of_work(), now=later, limit=10) == 2
    assert await sweep_expired(db.unit_of_work(), now=later) == 1
    assert await inv.levels() == {"MUG": (50, 0)}


async def test_product_created_makes_one_stock_row_and_logs_it_in_the_producers_trace(
        inv: Inventory, capsys: pytest.CaptureFixture[str]) -> None:
    logs = json_logs(capsys)
    configure_tracing("inventory", "inventory-test", None)
    with trace.get_tracer("test").start_as_current_span("catalog: create product") as span:
        created = envelope(ProductCreated(product_id="p1", sku="MUG-42", name="Mug",
                                          category="kitchen", price_amount="15000",
                                          price_currency="KRW"))
        trace_id = format(span.get_span_context().trace_id, "032x")
    assert await inv.send(delivery(created)) == Outcome.HANDLED
    assert await inv.send(delivery(created)) == Outcome.DUPLICATE
    resent = Envelope.new(created.subject, created.message_type, created.payload)
    assert await inv.send(delivery(resent)) == Outcome.HANDLED
    assert await inv.levels() == {"MUG-42": (0, 0)}
    [line] = logs("stock_created")
    assert (line["sku"], line["level"], line["trace_id"]) == ("MUG-42", "info", trace_id)
    # Other catalog events are handled (recorded in the inbox) without touching stock.
    assert await inv.send(PriceChanged(product_id="p1", sku="MUG-42", old_amount="1",
                                       new_amount="2", currency="KRW")) == Outcome.HANDLED
    assert await inv.send(ProductDiscontinued(product_id="p1", sku="MUG-42")) == Outcome.HANDLED
    assert await inv.levels() == {"MUG-42": (0, 0)}
