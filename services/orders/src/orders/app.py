"""Wiring of the orders service: ``create_app`` for the process, ``bootstrap`` for start-up
(the service client for identity, catalog and payments, the saga reconciler and the sagas'
metrics sampler), ``messaging`` for what it produces and consumes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from chassis.app import create_service_app, service_client
from chassis.auth import KeySource
from chassis.messaging.runtime import Messaging, StreamSpec
from chassis.messaging.streams import events_stream_name
from chassis.saga import SagaEngine, reconciler
from chassis.saga.metrics import SAMPLE_INTERVAL_S, SagaMetrics, saga_sampler
from fastapi import FastAPI

from orders.adapters.upstream import Upstreams
from orders.entrypoints.api import router
from orders.entrypoints.consumers import consumer_specs
from orders.entrypoints.deps import OrdersContext, OrdersWiring
from orders.metrics import ReplicaLookups
from orders.service_layer.admission import Admission, admission_counter
from orders.service_layer.saga import COMMANDS_SENT, DEFINITIONS
from orders.settings import OrdersSettings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# orders owns its events stream and publishes through its outbox (events, and the saga's
# commands into the other services' command queues, which those services declare). The
# broker lets it publish exactly the commands its sagas and cancellations build (ADR 0056).
STREAMS = [StreamSpec(events_stream_name("orders"), ["orders.events.>"])]
SENDS = COMMANDS_SENT


def messaging(settings: OrdersSettings, engine: SagaEngine) -> Messaging:
    return Messaging(streams=STREAMS, outbox=True, sends=SENDS,
                     consumers=consumer_specs(engine))


def build_upstreams(ctx: OrdersContext, settings: OrdersSettings) -> Upstreams:
    return Upstreams(service_client(ctx, settings), identity_url=settings.identity_url,
                     catalog_url=settings.catalog_url, payments_url=settings.payments_url)


def make_bootstrap(engine: SagaEngine) -> Callable[
        [OrdersContext], contextlib.AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def bootstrap(ctx: OrdersContext) -> AsyncIterator[None]:
        settings = ctx.settings
        admission = Admission(settings.max_sagas_in_flight, ctx.metrics.registry)
        ctx.wire(OrdersWiring(engine=engine, upstreams=build_upstreams(ctx, settings),
                              admission=admission,
                              replica_lookups=ReplicaLookups(ctx.metrics.registry),
                              card_key=settings.card_fingerprint_key))
        db = ctx.require_db()
        if settings.max_sagas_in_flight:
            ctx.background.every("admission-count", settings.admission_refresh_s,
                                 admission_counter(db, admission))
        saga_metrics = SagaMetrics(ctx.metrics.registry)
        engine.observe(saga_metrics)
        ctx.background.every("saga-sampler", SAMPLE_INTERVAL_S,
                             saga_sampler(db, engine.definitions, saga_metrics))
        if settings.reconciler_interval_s > 0:
            ctx.background.every("saga-reconciler", settings.reconciler_interval_s,
                                 reconciler(db, engine))
        yield

    return bootstrap


def create_app(settings: OrdersSettings | None = None, *,
               key_source: Callable[[OrdersContext], KeySource] | None = None) -> FastAPI:
    settings = settings or OrdersSettings()
    # One engine per app: the reply consumers, the reconciler and the API share it.
    engine = SagaEngine(DEFINITIONS)
    return create_service_app(
        settings, routers=[router], bootstrap=make_bootstrap(engine), key_source=key_source,
        messaging=messaging(settings, engine),
        description="Orders and the order saga (stock, charge, shipment).")
