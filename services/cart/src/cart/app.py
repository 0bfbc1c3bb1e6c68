"""Wiring of the cart service: ``create_app`` for the process, ``bootstrap`` for start-up
(the service client for catalog and orders), ``messaging`` for what it consumes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from chassis.app import create_service_app, service_client
from chassis.auth import KeySource
from chassis.messaging.runtime import Messaging
from fastapi import FastAPI

from cart.adapters.upstream import Upstreams
from cart.entrypoints.api import router
from cart.entrypoints.consumers import consumer_specs
from cart.entrypoints.deps import CartContext, CartWiring
from cart.settings import CartSettings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def messaging(settings: CartSettings) -> Messaging:
    # cart publishes nothing (no streams, no outbox); it follows the catalog's events.
    return Messaging(consumers=consumer_specs())


def build_upstreams(ctx: CartContext, settings: CartSettings) -> Upstreams:
    """The app's one client for catalog and orders (``chassis.app.service_client``)."""
    return Upstreams(service_client(ctx, settings), catalog_url=settings.catalog_url,
                     orders_url=settings.orders_url, orders_timeout_s=settings.orders_timeout_s)


@asynccontextmanager
async def bootstrap(ctx: CartContext) -> AsyncIterator[None]:
    ctx.wire(CartWiring(upstreams=build_upstreams(ctx, ctx.settings)))
    yield


def create_app(settings: CartSettings | None = None, *,
               key_source: Callable[[CartContext], KeySource] | None = None) -> FastAPI:
    settings = settings or CartSettings()
    return create_service_app(
        settings, routers=[router], bootstrap=bootstrap, key_source=key_source,
        messaging=messaging(settings),
        description="A cart per customer, priced from the catalog, checked out into an "
                    "order.")
