"""Shipping commands through the real inbox consumer and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from chassis.clock import utc_now
from chassis.db import Database
from chassis.logging import configure_logging
from chassis.messaging.consumer import Outcome
from chassis.messaging.envelope import Envelope
from contracts.orders.v1 import OrderApproved
from contracts.shipping.v1 import CancelShipment, CreateShipment
from shipping.domain.model import Timetable
from shipping.service_layer.handlers import sweep_carrier
from shipping_kit import Shipping, create, delivery, envelope, release

pytestmark = pytest.mark.integration

TIMES = Timetable(to_dispatched=timedelta(seconds=30), to_in_transit=timedelta(seconds=60),
                  to_delivered=timedelta(seconds=120))


@pytest.fixture
def ship(db: Database) -> Shipping:
    return Shipping(db, TIMES)


def types(events: list[dict]) -> list[str]:
    return [e["_type"] for e in events]


def cancel(sid: str, reason: str | None = "payment_declined") -> CancelShipment:
    return CancelShipment(shipment_id=sid, order_id=f"order-{sid}", reason=reason)


async def test_create_makes_one_shipment_with_a_tracking_number(ship: Shipping) -> None:
    assert await ship.send(create("s1")) == Outcome.HANDLED
    [created] = await ship.events()
    assert created["_type"] == "ShipmentCreated.v1"
    assert (created["shipment_id"], created["order_id"], created["customer_id"]) == (
        "s1", "order-s1", "cust-a")
    assert created["tracking_number"].startswith("MS")
    assert await ship.statuses() == {"s1": "CREATED"}
    assert await ship.history("s1") == ["CREATED"]


async def test_repeated_create_changes_nothing_and_reannounces(ship: Shipping) -> None:
    first = envelope(create("s1"))
    assert await ship.send(delivery(first)) == Outcome.HANDLED
    assert await ship.send(delivery(first)) == Outcome.DUPLICATE  # same message id
    assert await ship.send(create("s1")) == Outcome.HANDLED  # re-sent by the saga: new id
    announced = await ship.events("ShipmentCreated.v1")
    assert len(announced) == 2 and announced[0] == announced[1]  # same tracking number
    assert await ship.statuses() == {"s1": "CREATED"}


@pytest.mark.parametrize("address", [{"country": "KOR"}, {"country": "1"}, {"city": ""},
                                     {"name": "  "}, {"postal_code": ""}])
async def test_an_invalid_address_fails_the_creation_and_stores_nothing(
        ship: Shipping, address: dict) -> None:
    assert await ship.send(create("s1", **address)) == Outcome.HANDLED
    [failed] = await ship.events()
    assert failed == {"shipment_id": "s1", "order_id": "order-s1", "reason": "invalid_address",
                      "_type": "ShipmentCreationFailed.v1"}
    assert await ship.statuses() == {}


async def test_cancel_before_dispatch_cancels_and_is_idempotent(ship: Shipping,
                                                                db: Database) -> None:
    await ship.send(create("s1"))
    await ship.send(cancel("s1"))
    await ship.send(cancel("s1", reason="again"))
    assert types(await ship.events()) == ["ShipmentCreated.v1", "ShipmentCancelled.v1",
                                          "ShipmentCancelled.v1"]
    assert await ship.statuses() == {"s1": "CANCELLED"}
    assert await ship.history("s1") == ["CREATED", "CANCELLED"]
    # The carrier never picks up a cancelled shipment, however late it is.
    assert await sweep_carrier(db.unit_of_work(), TIMES,
                               now=utc_now() + timedelta(days=1)) == 0
    # A create re-sent after the cancel is refused: the saga must not think it lives.
    await ship.send(create("s1"))
    [refused] = await ship.events("ShipmentCreationFailed.v1")
    assert refused["reason"] == "cancelled"
    assert await ship.statuses() == {"s1": "CANCELLED"}


async def test_release_hands_a_created_shipment_to_the_carrier_once(ship: Shipping,
                                                                    db: Database) -> None:
    await ship.send(create("s1"))
    # Unknown: orders approved an order shipping has no parcel for; an operator must see it.
    assert await ship.send(release("nope")) == Outcome.DEAD_LETTERED
    [letter] = ship.dead_letters.messages
    assert "shipment 'nope'" in letter.headers["Mercato-Dlq-Error"]
    assert "does not exist" in letter.headers["Mercato-Dlq-Error"]
    await ship.send(release("s1"))
    assert await sweep_carrier(db.unit_of_work(), TIMES,
                               now=utc_now() + timedelta(seconds=31)) == 1
    await ship.send(release("s1"))  # dispatched already: no change
    assert await ship.statuses() == {"s1": "DISPATCHED"}
    await ship.send(create("s2"))
    await ship.send(cancel("s2"))
    await ship.send(release("s2"))  # cancelled stays cancelled
    assert await sweep_carrier(db.unit_of_work(), TIMES,
                               now=utc_now() + timedelta(days=1)) == 1  # s1 on to IN_TRANSIT
    assert (await ship.statuses())["s2"] == "CANCELLED"


def approved(sid: str | None) -> OrderApproved:
    """The approval of the order of ``create(sid)``, naming its shipment (ADR 0054)."""
    return OrderApproved(order_id=f"order-{sid}", customer_id="c1", total="100",
                         currency="EUR", reservation_id=f"order-{sid}", shipment_id=sid)


async def test_an_order_approval_releases_its_shipment_to_the_carrier_once(
        ship: Shipping, db: Database) -> None:
    """ADR 0054: the approval is the release. A redelivery or a re-published approval after
    dispatch changes nothing; an approval for a shipment shipping lacks is an operator's."""
    await ship.send(create("s1"))
    assert await sweep_carrier(db.unit_of_work(), TIMES,
                               now=utc_now() + timedelta(days=1)) == 0  # held
    approval = envelope(approved("s1"))
    assert await ship.send(delivery(approval)) == Outcome.HANDLED
    assert await ship.send(delivery(approval, 2)) == Outcome.DUPLICATE
    assert await sweep_carrier(db.unit_of_work(), TIMES,
                               now=utc_now() + timedelta(seconds=31)) == 1
    assert await ship.send(approved("s1")) == Outcome.HANDLED  # dispatched already
    assert await ship.statuses() == {"s1": "DISPATCHED"}
    assert await ship.send(approved("nope")) == Outcome.DEAD_LETTERED
    [letter] = ship.dead_letters.messages
    assert letter.subject == "dlq.shipping-orders-events"
    assert "shipment 'nope'" in letter.headers["Mercato-Dlq-Error"]


async def test_an_approval_from_before_adr_0054_or_after_a_cancel_releases_nothing(
        ship: Shipping, db: Database) -> None:
    """Before ADR 0054 the order sent ReleaseShipment and the approval names no shipment. A
    cancel read first (it travels on shipping's own stream) keeps the parcel cancelled."""
    await ship.send(create("s1"))
    assert await ship.send(approved(None)) == Outcome.HANDLED
    await ship.send(create("s2"))
    await ship.send(cancel("s2", reason="cancelled_by_customer"))
    assert await ship.send(approved("s2")) == Outcome.HANDLED
    assert await sweep_carrier(db.unit_of_work(), TIMES,
                               now=utc_now() + timedelta(days=1)) == 0
    assert await ship.statuses() == {"s1": "CREATED", "s2": "CANCELLED"}


async def test_cancel_before_create_leaves_a_tombstone_that_refuses_it(
        ship: Shipping) -> None:
    assert await ship.send(cancel("s1", reason="saga_timeout")) == Outcome.HANDLED
    [cancelled] = await ship.events()
    assert cancelled == {"shipment_id": "s1", "order_id": "order-s1",
                         "_type": "ShipmentCancelled.v1"}
    await ship.send(create("s1"))
    [refused] = await ship.events("ShipmentCreationFailed.v1")
    assert (refused["shipment_id"], refused["reason"]) == ("s1", "cancelled")
    await ship.send(cancel("s1"))  # and the tombstone answers a repeated cancel too
    assert len(await ship.events("ShipmentCancelled.v1")) == 2
    assert await ship.statuses() == {"s1": "CANCELLED"}
    assert await ship.events("ShipmentCreated.v1") == []


async def test_cancel_after_dispatch_is_refused_with_the_status(ship: Shipping,
                                                                db: Database) -> None:
    await ship.send(create("s1"))
    await ship.send(release("s1"))
    assert await sweep_carrier(db.unit_of_work(), TIMES,
                               now=utc_now() + timedelta(seconds=31)) == 1
    await ship.send(cancel("s1"))
    [refused] = await ship.events("ShipmentCancellationRefused.v1")
    assert refused == {"shipment_id": "s1", "order_id": "order-s1", "status": "DISPATCHED",
                       "_type": "ShipmentCancellationRefused.v1"}
    assert await ship.statuses() == {"s1": "DISPATCHED"}
    assert await ship.events("ShipmentCancelled.v1") == []


async def test_create_racing_its_cancel_ends_cancelled_either_way(ship: Shipping) -> None:
    for i in range(10):
        sid = f"race-{i}"
        await asyncio.gather(ship.send(create(sid)), ship.send(cancel(sid)))
    assert set((await ship.statuses()).values()) == {"CANCELLED"}
    assert len(await ship.events("ShipmentCancelled.v1")) == 10
    # Each create either came first (then was cancelled) or was refused by the tombstone.
    assert (len(await ship.events("ShipmentCreated.v1"))
            + len(await ship.events("ShipmentCreationFailed.v1"))) == 10


async def test_invalid_command_is_dead_lettered_on_its_first_delivery(ship: Shipping) -> None:
    bad = Envelope.new(CreateShipment.subject(), CreateShipment.message_type(),
                       {"shipment_id": "s1", "order_id": "o1", "lines": []})
    first = delivery(bad)
    assert await ship.send(first) == Outcome.DEAD_LETTERED and first.state == "acked"
    assert [m.subject for m in ship.dead_letters.messages] == ["dlq.shipping-commands"]
    assert await ship.statuses() == {} and await ship.events() == []


# -- a command's writes at commit (ADR 0052) ----------------------------------------------------

async def test_a_batch_reads_what_its_earlier_messages_wrote(
        ship: Shipping, capsys: pytest.CaptureFixture[str]) -> None:
    """One consumer batch is one transaction and a command's writes wait for its commit: the
    release and the cancel of a shipment created earlier in the batch still find it. Without
    the writes before each read, they found none (the cancel's tombstone then failed the
    batch's commit, handled again message by message)."""
    configure_logging("shipping", "shipping-test")
    messages = [create("s1"), release("s1"), create("s2"), cancel("s2"), create("s2")]
    envelopes = [Envelope.new(m.subject(), m.message_type(), m.to_payload(),
                              correlation_id="one-batch") for m in messages]
    outcomes = await ship.commands.process_batch(
        [delivery(e, n) for n, e in enumerate(envelopes, 1)])
    assert outcomes == [Outcome.HANDLED] * 5
    assert '"batch_fell_back_to_single"' not in capsys.readouterr().out
    assert await ship.statuses() == {"s1": "CREATED", "s2": "CANCELLED"}
    assert await ship.history("s2") == ["CREATED", "CANCELLED"]
    assert types(await ship.events()) == ["ShipmentCreated.v1", "ShipmentCreated.v1",
                                          "ShipmentCancelled.v1", "ShipmentCreationFailed.v1"]


async def test_a_create_and_a_release_write_once_at_commit(
        ship: Shipping, db: Database, pg_server: Any, database_url: str) -> None:
    """A create's shipment, its first history step and its event go out as one statement
    before the COMMIT, as do a carrier round's moves, their steps and their events
    (ADR 0052); a release changes one row."""
    with pg_server.statements_logged(database_url.rsplit("/", 1)[1]) as logged:
        one = Database(database_url, pool_size=1)
        try:
            pid = (await one.fetch_once("SELECT pg_backend_pid() AS pid"))[0]["pid"]
            alone = Shipping(one, TIMES)
            sent: dict[str, list[str]] = {}
            for sid in ("s0", "s1"):  # the first round warms the connection
                for name, message in (("create", create(sid)), ("release", release(sid))):
                    before = len(logged(pid))
                    assert await alone.send(message) == Outcome.HANDLED
                    sent[name] = [" ".join(s.split(": ", 1)[1].split())
                                  for s in logged(pid)[before:]]
            before = len(logged(pid))
            assert await sweep_carrier(one.unit_of_work(), TIMES,
                                       now=utc_now() + timedelta(seconds=31)) == 2
            sent["carrier"] = [" ".join(s.split(": ", 1)[1].split())
                               for s in logged(pid)[before:]]
        finally:
            await one.dispose()
    writes = {name: [s for s in statements if s.startswith(("WITH", "INSERT", "UPDATE"))]
              for name, statements in sent.items()}
    assert [len(w) for w in writes.values()] == [1, 1, 1], sent
    # The shipment's lock goes with the inbox claim and its BEGIN (ADR 0055): a create is
    # the claim, the shipment's read, one write and the COMMIT; a release the same.
    for name in ("create", "release"):
        assert sent[name][0].startswith(
            "BEGIN; SELECT pg_advisory_xact_lock(7244, hashtext('s1')); INSERT INTO inbox"), sent
        assert not [s for s in sent[name][1:] if "pg_advisory_xact_lock" in s], sent
    # A shipment is read with its history, one round trip (ADR 0055): a release is the claim,
    # that read, one write and the COMMIT; a carrier round the same, less the claim.
    assert not [s for sent_by in sent.values() for s in sent_by
                if s.startswith("SELECT shipment_id, status, at")], sent
    assert (len(sent["release"]), len(sent["carrier"])) == (4, 4), sent
    assert all(part in writes["create"][0] for part in (
        "INSERT INTO shipments", "INSERT INTO shipment_history", "INSERT INTO outbox")), writes
    assert writes["release"][0].startswith("UPDATE shipments"), writes
    assert all(part in writes["carrier"][0] for part in (
        "UPDATE shipments", "INSERT INTO shipment_history", "INSERT INTO outbox")), writes
    assert await ship.statuses() == {"s0": "DISPATCHED", "s1": "DISPATCHED"}
    assert await ship.history("s1") == ["CREATED", "DISPATCHED"]
