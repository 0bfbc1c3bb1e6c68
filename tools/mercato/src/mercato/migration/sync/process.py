"""``python -m mercato.migration.sync``: the sync as a process, supervised by the runtime
with ``mercato up --with legacy`` (like the ACL), on loopback. It keeps the catalog in step
and, given ``--identity-url``, identity's accounts and addresses too (ADR 0031).

Secrets come from the environment: ``SYNC_SIGNING_KEY`` (its ed25519 service identity key,
which catalog and identity trust as ``sync``), ``SYNC_NATS_NKEY_SEED`` and
``SYNC_NATS_INBOX_PREFIX`` (its broker credentials), ``SYNC_REGISTRY_TRUSTED_KEYS`` (to find
the services in the registry when their URLs name them, ``http://catalog``).

HTTP: ``/health/live``, ``/health/ready``, ``/metrics``, ``/sync/status``,
``/sync/conflicts``, ``/sync/rejects``, ``POST /sync/backfill?capability=catalog|identity``
(starts it; resumable) and ``GET /sync/backfill?capability=...`` (its progress).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import nats
import structlog
from aiohttp import web
from chassis.service_identity import CallerSigner
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import generate_latest

from mercato.migration.sync import store
from mercato.migration.sync.accounts import Identity
from mercato.migration.sync.catalog import CALLER, Catalog
from mercato.migration.sync.engine import TO_LEGACY, TO_SERVICES, MalformedEvent, Metrics, Sync
from mercato.migration.worker import Worker, backoff, connect_retrying, run_until_signalled

log = structlog.get_logger("mercato.migration.sync")

DURABLE = "sync-catalog"
# The monolith's outbox rows the sync has passed are kept this long (to look into what it
# synced), then deleted, at most once every PRUNE_EVERY_S and only while it has caught up.
OUTBOX_RETENTION_S = 7 * 86400
PRUNE_EVERY_S = 3600.0
ARMED = "armed"  # a checkpoint row: set by the first backfill, the sync follows both sides
STREAM = "CATALOG_EVENTS"
SUBJECT = "catalog.events.>"
# Per capability: its "armed" checkpoint, its events (stream, subjects, durable consumer).
FOLLOWED = {"catalog": (ARMED, STREAM, SUBJECT, DURABLE),
            "identity": ("armed:identity", "IDENTITY_EVENTS", "identity.events.>",
                         "sync-identity")}


class Runner(Worker):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.args = args
        self.backfilling: dict[str, asyncio.Task[Any]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.armed: set[str] = set()

    @property
    def capabilities(self) -> tuple[str, ...]:
        return ("catalog", "identity") if self.args.identity_url else ("catalog",)

    def arm(self, capability: str = "catalog") -> None:
        """Start following both sides of a capability. Not before its first backfill: a
        monolith being seeded must not receive the services' records first, and a shop's
        history is the backfill's to copy, not the outbox's."""
        if capability in self.armed:
            return
        self.armed.add(capability)
        self.sync.following = set(self.armed)
        if not self.tasks:
            self.tasks = [asyncio.create_task(self.legacy_loop())]
        handler = (self.sync.on_catalog_event if capability == "catalog"
                   else self.sync.on_identity_event)
        _, stream, subject, durable = FOLLOWED[capability]
        self.tasks.append(asyncio.create_task(self.events_loop(
            stream, subject, durable, handler, self.sync.metrics_of[capability],
            store.KINDS[capability][0])))

    async def catalog_url(self) -> str:
        return await self.resolve(self.args.catalog_url)

    async def identity_url(self) -> str:
        return await self.resolve(self.args.identity_url)

    async def run(self) -> None:
        args = self.args
        dsn = args.legacy_dsn.replace("+asyncpg", "")
        signer = CallerSigner(CALLER, os.environ["SYNC_SIGNING_KEY"])
        self.catalog = Catalog(self.catalog_url, signer)
        self.identity = Identity(self.identity_url, signer) if args.identity_url else None
        app = self.http_app()
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        # One sync at a time, held until this process dies (kill -9 included).
        holder = await connect_retrying(dsn, self.stop, "sync_waiting_for_legacy_db")
        if holder is None:
            return
        await holder.execute("SELECT pg_advisory_lock($1)", store.LOCK_KEY)
        await store.create(holder)
        self.pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        self.sync = Sync(self.pool, self.catalog, self.identity)
        self.sync.following = set()
        await self.connect_broker(args.nats_url, "sync",
                                  [u for u in (args.catalog_url, args.identity_url) if u])
        self.ready = True
        async with self.pool.acquire() as conn:
            armed = [c for c in self.capabilities
                     if await store.checkpoint(conn, FOLLOWED[c][0]) > 0]
        log.info("sync_started", port=args.port, catalog=args.catalog_url,
                 identity=args.identity_url, armed=armed)
        for capability in armed:
            self.arm(capability)
        await self.stop.wait()
        tasks = self.tasks
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.close_broker()
        await self.catalog.close()
        if self.identity is not None:
            await self.identity.close()
        await self.pool.close()
        await holder.close()
        await runner.cleanup()

    async def legacy_loop(self) -> None:
        failures = 0
        pruned_at = -math.inf
        while True:
            try:
                passed = await self.sync.pump_legacy()
                failures = 0
                if not passed and time.monotonic() - pruned_at > PRUNE_EVERY_S:
                    pruned_at = time.monotonic()
                    async with self.pool.acquire() as conn:
                        pruned = await store.prune_outbox(conn, OUTBOX_RETENTION_S)
                    if pruned:
                        log.info("sync_outbox_pruned", rows=pruned)
                if not passed:
                    await asyncio.sleep(self.args.poll_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                for metrics in self.sync.metrics_of.values():  # the pump is both's
                    metrics.errors.labels(TO_SERVICES, "transient").inc()
                log.warning("sync_legacy_retry", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(backoff(failures))

    async def events_loop(self, stream: str, subject: str, durable: str,
                          handler: Callable[[bytes, str | None, str], Awaitable[None]],
                          metrics: Metrics, kind: str = "products") -> None:
        js = self.nc.jetstream()
        failures = 0
        sub = None
        while sub is None:
            try:
                sub = await js.pull_subscribe(
                    subject, durable=durable, stream=stream,
                    config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30,
                                          deliver_policy=DeliverPolicy.ALL, max_deliver=-1))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the stream is declared by its service at its start
                failures += 1
                log.info("sync_waiting_for_stream", stream=stream, error=str(exc))
                await asyncio.sleep(backoff(failures))
        failures = 0
        while True:
            try:
                msgs = await sub.fetch(50, timeout=1)
            except asyncio.CancelledError:
                raise
            except nats.errors.TimeoutError:
                self._measure_consumer(metrics, 0)
                continue
            except Exception as exc:
                failures += 1
                log.warning("sync_fetch_failed", error=str(exc))
                await asyncio.sleep(backoff(failures))
                continue
            for msg in msgs:
                try:
                    await handler(msg.data, (msg.headers or {}).get("Mercato-Occurred-At"),
                                  msg.subject)
                    await msg.ack()
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except MalformedEvent as exc:
                    await self._reject_event(msg, exc, kind, metrics)
                except Exception as exc:
                    failures += 1
                    metrics.errors.labels(TO_LEGACY, "transient").inc()
                    log.warning("sync_event_retry", error=f"{type(exc).__name__}: {exc}")
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=backoff(failures))
            if msgs:
                self._measure_consumer(metrics, msgs[-1].metadata.num_pending)

    async def _reject_event(self, msg: Any, exc: MalformedEvent, kind: str,
                            metrics: Metrics) -> None:
        """Recorded (``/sync/rejects``, ``mercato migrate status``) and never delivered
        again. If recording fails, the event comes back and is recorded next time."""
        metrics.errors.labels(TO_LEGACY, "rejected").inc()
        log.error("sync_event_malformed", subject=msg.subject, error=str(exc))
        try:
            async with self.pool.acquire() as conn:
                await store.record_reject(conn, TO_LEGACY, None, None,
                                          f"malformed event on {msg.subject}: {exc}", kind=kind)
        except Exception as failed:
            log.warning("sync_reject_not_recorded", error=f"{type(failed).__name__}: {failed}")
            with contextlib.suppress(Exception):
                await msg.nak(delay=5)
            return
        await msg.term()

    @staticmethod
    def _measure_consumer(metrics: Metrics, pending: int) -> None:
        metrics.backlog.labels(TO_LEGACY).set(pending)
        if pending == 0:
            metrics.lag.labels(TO_LEGACY).set(0)

    # -- HTTP ------------------------------------------------------------------------------

    def http_app(self) -> web.Application:
        app = self.health_app(lambda: b"".join(
            generate_latest(self.sync.metrics_of[c].registry) for c in self.capabilities))

        async def status(_: web.Request) -> web.Response:
            if not self.ready:
                return web.json_response({"ready": False}, status=503)
            async with self.pool.acquire() as conn:
                position = await store.checkpoint(conn, "legacy_outbox")
                of = {c: await self._status_of(conn, c) for c in self.capabilities}
            # The catalog's at the top, as before identity was synced; each under its name.
            return web.json_response({"ready": True, "legacy_outbox_position": position,
                                      **of["catalog"], **of})

        async def conflicts(request: web.Request) -> web.Response:
            limit = _limit(request)
            async with self.pool.acquire() as conn:
                return web.json_response({"items": await store.conflicts(conn, limit)})

        async def rejects(request: web.Request) -> web.Response:
            limit = _limit(request)
            async with self.pool.acquire() as conn:
                return web.json_response({"items": await store.rejects(conn, limit)})

        def capability_of(request: web.Request) -> str:
            capability = request.query.get("capability", "catalog")
            if capability not in self.capabilities:
                raise web.HTTPUnprocessableEntity(
                    text=json.dumps({"title": f"this sync keeps {', '.join(self.capabilities)}"
                                              f" in step, not {capability!r}"}),
                    content_type="application/problem+json")
            return capability

        async def start_backfill(request: web.Request) -> web.Response:
            capability = capability_of(request)
            if not self.ready:
                return web.json_response({"title": "not ready"}, status=503)
            running = self.backfilling.get(capability)
            if running is None or running.done():
                async with self.pool.acquire() as conn:
                    await store.save_checkpoint(conn, FOLLOWED[capability][0], 1)
                # Followed from now on, so what changes during the backfill is synced too.
                self.arm(capability)
                # Said at once, so a follower never takes the last run's "done" for this one.
                self.sync.backfills[capability] = {"state": "starting"}
                self.backfilling[capability] = asyncio.create_task(self._backfill(capability))
            return web.json_response(self.sync.backfills[capability], status=202)

        async def backfill_state(request: web.Request) -> web.Response:
            capability = capability_of(request)
            state = self.sync.backfills[capability] if self.ready else {"state": "starting"}
            return web.json_response(state)

        app.router.add_get("/sync/status", status)
        app.router.add_get("/sync/conflicts", conflicts)
        app.router.add_get("/sync/rejects", rejects)
        app.router.add_post("/sync/backfill", start_backfill)
        app.router.add_get("/sync/backfill", backfill_state)
        return app

    async def _status_of(self, conn: asyncpg.Connection, capability: str) -> dict[str, Any]:
        sample = self.sync.metrics_of[capability].sample
        ways = (TO_SERVICES, TO_LEGACY)
        return {"armed": capability in self.armed, **await store.counts(conn, capability),
                "lag_s": {d: sample("lag_seconds", {"direction": d}) for d in ways},
                "backlog": {d: sample("backlog", {"direction": d}) for d in ways},
                "errors": {d: {k: sample("errors_total", {"direction": d, "kind": k})
                               for k in ("transient", "rejected")} for d in ways},
                "backfill": self.sync.backfills[capability]}

    async def _backfill(self, capability: str) -> None:
        try:
            if capability == "catalog":
                await self.sync.backfill()
            else:
                await self.sync.backfill_identity()
        except Exception as exc:
            self.sync.backfills[capability] = {**self.sync.backfills[capability],
                                               "state": "failed",
                                               "error": f"{type(exc).__name__}: {exc}"}
            log.warning("sync_backfill_failed", capability=capability, error=str(exc))


def _limit(request: web.Request) -> int:
    try:
        return max(1, min(500, int(request.query.get("limit", "50"))))
    except ValueError:
        return 50


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mercato.migration.sync")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--legacy-dsn", required=True)
    parser.add_argument("--catalog-url", required=True,
                        help="http://catalog (through the registry) or a direct URL")
    parser.add_argument("--identity-url", default=None,
                        help="http://identity (through the registry) or a direct URL: keep "
                             "identity's accounts and addresses in step too (ADR 0031)")
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--poll-s", type=float, default=0.2)
    args = parser.parse_args(argv)
    if not os.environ.get("SYNC_SIGNING_KEY"):
        parser.error("SYNC_SIGNING_KEY (the sync's ed25519 identity key) is not set")
    runner = Runner(args)
    run_until_signalled(runner, runner.run)
