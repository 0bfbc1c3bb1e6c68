"""`mercato chaos` waits for orders while they keep ending: an order is stuck only when none
has ended for a while, and one the platform no longer knows is lost. A real HTTP server
stands in for the edge's order lookups; terminal events arrive as the listener files them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from mercato.bench.load import OrderRecord
from mercato.bench.shop import Customer, Shop
from mercato.chaos import run as chaos_run


@pytest.fixture
async def edge() -> AsyncIterator[str]:
    async def order(request: web.Request) -> web.Response:
        if request.match_info["id"] == "gone":
            return web.json_response({"title": "not found"}, status=404)
        return web.json_response({"status": "PENDING"})  # only an event makes it terminal

    app = web.Application()
    app.router.add_get("/api/orders/{id}", order)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_slow_orders_that_keep_ending_are_waited_for_stuck_and_lost_told_apart(
        edge: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chaos_run, "DRAIN_STALL_S", 1.0)
    monkeypatch.setattr(chaos_run, "DRAIN_CAP_S", 20.0)
    slow = [f"slow-{i}" for i in range(6)]
    records = [OrderRecord(index=i, declined_card=False, sent_at=time.time(),
                           http_status=202, order_id=oid)
               for i, oid in enumerate([*slow, "never", "gone"])]
    shop = Shop(admin={}, customers=[], products=[])
    async with aiohttp.ClientSession() as session:
        run = chaos_run.Run(home=None, edge=edge, nats_url="", session=session,  # type: ignore[arg-type]
                            shop=shop, canary=Customer(auth={}, address_id=""),
                            prober=Customer(auth={}, address_id=""), say=lambda _m: None,
                            rate=1.0)

        async def events() -> None:  # one ends every 0.4 s: 2.4 s in all, past the stall
            for oid in slow:
                await asyncio.sleep(0.4)
                shop.events[oid] = ("APPROVED", time.time(), time.time())

        feeder = asyncio.create_task(events())
        stuck, lost = await chaos_run._settle(run, records)
        await feeder
    assert (stuck, lost) == (1, 1)
    assert [r.via for r in records if r.order_id in slow] == ["event"] * 6
    assert next(r for r in records if r.order_id == "never").terminal is None

