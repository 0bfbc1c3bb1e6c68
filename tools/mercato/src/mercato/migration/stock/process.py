"""``python -m mercato.migration.stock``: the stock split's rebalancer as a process,
supervised beside the sync under ``mercato up --with legacy``, on loopback.

Each pass (every ``--interval-s``) reads the checkout share from the flag file, finishes
open transfers, takes new products into the split and moves free units toward the share.
One rebalancer at a time: it holds an advisory lock in the monolith's database until it
dies (kill -9 included); a second one waits.

Secrets come from the environment, as the sync's: ``SYNC_SIGNING_KEY`` (the ``sync``
service identity the inventory lets adjust), ``SYNC_NATS_NKEY_SEED``,
``SYNC_NATS_INBOX_PREFIX`` and ``SYNC_REGISTRY_TRUSTED_KEYS`` (to find the inventory in the
registry when ``--inventory-url`` names a service, ``http://inventory``).

HTTP: ``/health/live``, ``/health/ready``, ``/metrics``, ``/stock/status`` (units each
side owns, transfers by state, the last pass).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import structlog
from aiohttp import web
from chassis.discovery import is_service_name
from chassis.service_identity import CallerSigner
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from mercato.migration.flags import read_flags, shares
from mercato.migration.stock.inventory import CALLER, Inventory
from mercato.migration.stock.rebalancer import rebalance
from mercato.migration.stock.split import DEFAULT_FLOOR
from mercato.migration.stock.transfers import Transfers
from mercato.migration.worker import Worker, backoff, connect_retrying, run_until_signalled

log = structlog.get_logger("mercato.migration.stock")

LOCK_KEY = 0x6D73746B  # "mstk": one rebalancer at a time
CAPABILITY = "checkout"


async def status(conn: asyncpg.Connection) -> dict[str, Any]:
    """The split as the monolith's database knows it (also read by `mercato migrate
    status`): its products and units, and the transfers by direction and state."""
    split = await conn.fetchrow(
        "SELECT count(*) AS products, coalesce(sum(s.on_hand), 0)::bigint AS legacy_units "
        "FROM legacy_stock_split x JOIN stock s ON s.product_id = x.product_id")
    rows = await conn.fetch(
        "SELECT direction, state, count(*) AS n, sum(quantity)::bigint AS units "
        "FROM legacy_stock_transfers GROUP BY direction, state")
    transfers: dict[str, dict[str, int]] = {}
    for r in rows:
        transfers.setdefault(r["state"], {})[r["direction"]] = int(r["n"])
    moved = {d: sum(int(r["units"]) for r in rows if r["direction"] == d
                    and r["state"] == "done") for d in ("to_services", "to_legacy")}
    return {"products": int(split["products"]), "legacy_units": int(split["legacy_units"]),
            "transfers": transfers,
            "open": sum(sum(v.values()) for k, v in transfers.items()
                        if k in ("debited", "pending")),
            "failed": sum(sum(v.values()) for k, v in transfers.items()
                          if k in ("failed", "reverted")),
            "moved": moved}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.moved = Counter("stock_split_moved_units", "Units moved by finished transfers",
                             ["direction"], registry=self.registry)
        self.passes = Counter("stock_split_passes", "Rebalancer passes", ["outcome"],
                              registry=self.registry)
        self.units = Gauge("stock_split_units", "Units each side owned after the last pass",
                           ["side"], registry=self.registry)
        self.percent = Gauge("stock_split_checkout_percent",
                             "The checkout share of the last pass", registry=self.registry)


class Runner(Worker):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.args = args
        self.metrics = Metrics()
        self.last: dict[str, Any] = {}

    async def inventory_url(self) -> str:
        return await self.resolve(self.args.inventory_url)

    def percent(self) -> int:
        return shares(read_flags(Path(self.args.flags)))[CAPABILITY].percent

    async def run(self) -> None:
        args = self.args
        dsn = args.legacy_dsn.replace("+asyncpg", "")
        self.inventory = Inventory(self.inventory_url,
                                   CallerSigner(CALLER, os.environ["SYNC_SIGNING_KEY"]))
        runner = web.AppRunner(self.http_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        holder = await connect_retrying(dsn, self.stop, "stock_split_waiting_for_legacy_db")
        if holder is None:
            return
        await holder.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        self.pool = await asyncpg.create_pool(dsn, min_size=1, max_size=3)
        self.transfers = Transfers(self.pool, self.inventory, step_pause_s=args.step_pause_s)
        if is_service_name(urlsplit(args.inventory_url).hostname or ""):
            await self.connect_broker(args.nats_url, "stock-split", [args.inventory_url])
        self.ready = True
        log.info("stock_split_started", port=args.port, inventory=args.inventory_url)
        loop = asyncio.create_task(self.loop())
        await self.stop.wait()
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await loop
        await self.close_broker()
        await self.inventory.close()
        await self.pool.close()
        await holder.close()
        await runner.cleanup()

    async def loop(self) -> None:
        failures = 0
        while True:
            started, started_at = time.monotonic(), time.time()
            try:
                percent = self.percent()
                done = await rebalance(self.pool, self.inventory, self.transfers, percent,
                                       self.args.floor)
                failures = 0
                self.metrics.passes.labels("ok").inc()
                self.metrics.percent.set(percent)
                for direction, units in done.moved.items():
                    self.metrics.moved.labels(direction).inc(units)
                for side, units in done.units.items():
                    self.metrics.units.labels(side).set(units)
                self.last = {"at": time.time(), "started_at": started_at,
                             "percent": percent, "finished": done.finished,
                             "adopted": done.adopted, "moved": done.moved,
                             "failed": done.failed, "units": done.units,
                             "took_s": round(time.monotonic() - started, 3)}
                await asyncio.sleep(self.args.interval_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # FlagFileError, the inventory, the database
                failures += 1
                self.metrics.passes.labels("failed").inc()
                self.last = {**self.last, "error": f"{type(exc).__name__}: {exc}"}
                log.warning("stock_split_retry", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(backoff(failures))

    def http_app(self) -> web.Application:
        app = self.health_app(lambda: generate_latest(self.metrics.registry))

        async def split_status(_: web.Request) -> web.Response:
            if not self.ready:
                return web.json_response({"ready": False}, status=503)
            async with self.pool.acquire() as conn:
                doc = await status(conn)
            return web.json_response({"ready": True, **doc, "last_pass": self.last})

        app.router.add_get("/stock/status", split_status)
        return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mercato.migration.stock")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--legacy-dsn", required=True)
    parser.add_argument("--inventory-url", required=True,
                        help="http://inventory (through the registry) or a direct URL")
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222",
                        help="the registry's broker, when --inventory-url names a service")
    parser.add_argument("--flags", required=True, help="the migration's flag file")
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--floor", type=int, default=DEFAULT_FLOOR,
                        help="units a side with a share above 0 %% keeps while there are "
                             "enough for both")
    parser.add_argument("--step-pause-s", type=float, default=0.0,
                        help="drills only: a pause inside each transfer")
    args = parser.parse_args(argv)
    if not os.environ.get("SYNC_SIGNING_KEY"):
        parser.error("SYNC_SIGNING_KEY (the sync's ed25519 identity key) is not set")
    if args.floor < 0 or args.interval_s <= 0 or args.step_pause_s < 0:
        parser.error("--floor must be >= 0, --interval-s > 0, --step-pause-s >= 0")
    runner = Runner(args)
    run_until_signalled(runner, runner.run)
