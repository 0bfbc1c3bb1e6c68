"""The simulated carrier over PostgreSQL: every step once, even with several carriers."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from chassis.background import BackgroundTasks
from chassis.clock import utc_now
from chassis.db import Database
from prometheus_client import CollectorRegistry
from shipping.domain.model import Timetable
from shipping.entrypoints.carrier import carrier_round
from shipping.service_layer.handlers import sweep_carrier
from shipping_kit import Shipping, create, release
from sqlalchemy import text

pytestmark = pytest.mark.integration

TIMES = Timetable(to_dispatched=timedelta(seconds=30), to_in_transit=timedelta(seconds=60),
                  to_delivered=timedelta(seconds=120))
ROUTE = ["DISPATCHED", "IN_TRANSIT", "DELIVERED"]


def changes(events: list[dict]) -> list[tuple[str, str]]:
    return [(e["shipment_id"], e["status"]) for e in events]


async def test_two_concurrent_carriers_move_each_shipment_once_per_step(db: Database) -> None:
    ship = Shipping(db, TIMES)
    for i in range(20):
        await ship.send(create(f"s{i}"))
    # Held in the warehouse until released (the order approved), however long it waits.
    assert await sweep_carrier(db.unit_of_work(), TIMES, now=utc_now() + timedelta(days=1)) == 0
    for i in range(20):
        await ship.send(release(f"s{i}"))
        await ship.send(release(f"s{i}"))  # a repeat does not restart the clock
    start = utc_now()
    assert await sweep_carrier(db.unit_of_work(), TIMES, now=start) == 0  # nothing due yet
    at = start + timedelta(seconds=31)
    for step, wait in zip(ROUTE, (60, 120, 0), strict=True):
        moved = await asyncio.gather(*(sweep_carrier(db.unit_of_work(), TIMES, now=at)
                                       for _ in range(2)))
        assert sum(moved) == 20, (step, moved)  # shared out, never done twice
        assert set((await ship.statuses()).values()) == {step}
        at += timedelta(seconds=wait + 1)
    assert await sweep_carrier(db.unit_of_work(), TIMES, now=at + timedelta(days=1)) == 0
    changed = await ship.events("ShipmentStatusChanged.v1")
    assert len(changed) == 60
    assert sorted(changes(changed)) == sorted((f"s{i}", s) for i in range(20) for s in ROUTE)
    first = next(e for e in changed if e["shipment_id"] == "s0")
    assert (first["order_id"], first["customer_id"]) == ("order-s0", "cust-a")
    assert first["tracking_number"].startswith("MS")
    assert await ship.history("s0") == ["CREATED", *ROUTE]


async def test_a_round_is_batched_and_skips_a_shipment_a_command_holds(db: Database) -> None:
    ship = Shipping(db, TIMES)
    for i in range(5):
        await ship.send(create(f"s{i}"))
        await ship.send(release(f"s{i}"))
    later = utc_now() + timedelta(seconds=31)
    async with db.unit_of_work() as holder:  # a CancelShipment working on s0 right now
        await holder.session.execute(text(
            "SELECT 1 FROM shipments WHERE shipment_id = 's0' FOR UPDATE"))
        assert await sweep_carrier(db.unit_of_work(), TIMES, now=later, limit=2) == 2
        assert await sweep_carrier(db.unit_of_work(), TIMES, now=later, limit=10) == 2
    assert await sweep_carrier(db.unit_of_work(), TIMES, now=later) == 1
    assert set((await ship.statuses()).values()) == {"DISPATCHED"}


async def test_the_running_carrier_delivers_on_fast_timers(db: Database) -> None:
    fast = Timetable(to_dispatched=timedelta(seconds=0.05), to_in_transit=timedelta(seconds=0.05),
                     to_delivered=timedelta(seconds=0.05))
    ship = Shipping(db, fast)
    await ship.send(create("s1"))
    await ship.send(release("s1"))
    # Two carriers, as with two instances of the service.
    instances = [BackgroundTasks(CollectorRegistry()) for _ in range(2)]
    for tasks in instances:
        tasks.every("carrier", 0.02, carrier_round(db, fast))
        tasks.start()
    try:
        async with asyncio.timeout(10):
            while (await ship.statuses())["s1"] != "DELIVERED":
                await asyncio.sleep(0.02)
    finally:
        for tasks in instances:
            await tasks.stop()
    assert [e["status"] for e in await ship.events("ShipmentStatusChanged.v1")] == ROUTE
    assert await ship.history("s1") == ["CREATED", *ROUTE]
