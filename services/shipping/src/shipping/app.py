"""Wiring of the shipping service: ``create_app`` for the process, ``bootstrap`` for start-up
(it runs the simulated carrier), ``messaging`` for what it produces and consumes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from chassis.app import create_service_app
from chassis.auth import KeySource
from chassis.messaging.runtime import Messaging, StreamSpec
from chassis.messaging.streams import commands_stream_name, events_stream_name
from fastapi import FastAPI

from shipping.entrypoints.api import router
from shipping.entrypoints.background import carrier_round
from shipping.entrypoints.consumers import consumer_specs
from shipping.entrypoints.deps import ShippingContext
from shipping.settings import ShippingSettings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# shipping owns its events stream and its command work queue, and publishes through its
# outbox. It consumes only its own commands (from the order saga).
STREAMS = [StreamSpec(events_stream_name("shipping"), ["shipping.events.>"]),
           StreamSpec(commands_stream_name("shipping"), ["shipping.commands.>"],
                      work_queue=True)]


def messaging(settings: ShippingSettings) -> Messaging:
    return Messaging(streams=STREAMS, outbox=True,
                     consumers=consumer_specs(settings.timetable()))


@asynccontextmanager
async def bootstrap(ctx: ShippingContext) -> AsyncIterator[None]:
    settings = ctx.settings
    if settings.carrier_interval_s > 0:
        ctx.background.every("carrier", settings.carrier_interval_s, carrier_round(
            ctx.require_db(), settings.timetable(), batch_size=settings.carrier_batch_size))
    yield


def create_app(settings: ShippingSettings | None = None, *,
               key_source: Callable[[ShippingContext], KeySource] | None = None) -> FastAPI:
    settings = settings or ShippingSettings()
    return create_service_app(
        settings, routers=[router], bootstrap=bootstrap, key_source=key_source,
        messaging=messaging(settings),
        description="Shipments for orders, moved along by a simulated carrier.")
