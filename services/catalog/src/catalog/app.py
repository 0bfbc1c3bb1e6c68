"""Wiring of the catalog service: ``create_app`` for the process, ``bootstrap`` for start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from chassis.app import create_service_app
from chassis.auth import KeySource
from chassis.messaging.runtime import Messaging, StreamSpec
from chassis.messaging.streams import events_stream_name
from fastapi import FastAPI

from catalog.entrypoints.api import router
from catalog.entrypoints.deps import CatalogContext
from catalog.service_layer.seed import seed_demo_catalog
from catalog.settings import CatalogSettings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# catalog owns CATALOG_EVENTS and publishes to it through its outbox; it consumes nothing.
MESSAGING = Messaging(streams=[StreamSpec(events_stream_name("catalog"), ["catalog.events.>"])],
                      outbox=True)
log = structlog.get_logger("catalog")


@asynccontextmanager
async def bootstrap(ctx: CatalogContext) -> AsyncIterator[None]:
    settings = ctx.settings
    if settings.seed_demo:
        added = await seed_demo_catalog(ctx.require_db().unit_of_work())
        if added:
            log.info("demo_catalog_seeded", products=added)
    yield


def create_app(settings: CatalogSettings | None = None, *,
               key_source: Callable[[CatalogContext], KeySource] | None = None) -> FastAPI:
    return create_service_app(
        settings or CatalogSettings(), routers=[router], bootstrap=bootstrap,
        key_source=key_source, messaging=MESSAGING,
        description="Products, categories, prices and search.")
