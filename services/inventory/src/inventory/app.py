"""Wiring of the inventory service: ``create_app`` for the process, ``bootstrap`` for start-up,
``messaging`` for what it produces and consumes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from chassis.app import create_service_app
from chassis.auth import KeySource
from chassis.messaging.runtime import Messaging, StreamSpec
from chassis.messaging.streams import commands_stream_name, events_stream_name
from fastapi import FastAPI

from inventory.entrypoints.api import router
from inventory.entrypoints.background import expiry_sweep
from inventory.entrypoints.consumers import consumer_specs
from inventory.entrypoints.deps import InventoryContext
from inventory.settings import InventorySettings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# inventory owns its events stream and its command work queue, and publishes through its
# outbox. What it consumes depends on settings (the TTL and low-stock threshold).
STREAMS = [StreamSpec(events_stream_name("inventory"), ["inventory.events.>"]),
           StreamSpec(commands_stream_name("inventory"), ["inventory.commands.>"],
                      work_queue=True)]


def messaging(settings: InventorySettings) -> Messaging:
    return Messaging(streams=STREAMS, outbox=True, consumers=consumer_specs(settings.policy()))


@asynccontextmanager
async def bootstrap(ctx: InventoryContext) -> AsyncIterator[None]:
    settings = ctx.settings
    if settings.expiry_interval_s > 0:
        ctx.background.every("expiry", settings.expiry_interval_s, expiry_sweep(
            ctx.require_db(), batch_size=settings.expiry_batch_size))
    yield


def create_app(settings: InventorySettings | None = None, *,
               key_source: Callable[[InventoryContext], KeySource] | None = None) -> FastAPI:
    settings = settings or InventorySettings()
    return create_service_app(
        settings, routers=[router], bootstrap=bootstrap, key_source=key_source,
        messaging=messaging(settings),
        description="Stock levels and reservations (all lines or none, with expiry).")
