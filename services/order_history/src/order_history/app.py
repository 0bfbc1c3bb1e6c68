"""Wiring of the order_history service: ``create_app`` for the process, ``bootstrap`` for
start-up (nothing beyond the chassis), ``messaging`` for what it consumes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from chassis.app import ServiceContext, create_service_app
from chassis.auth import KeySource
from chassis.messaging.runtime import Messaging
from fastapi import FastAPI

from order_history.entrypoints.api import router
from order_history.entrypoints.consumers import consumer_specs
from order_history.settings import OrderHistorySettings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def messaging(settings: OrderHistorySettings) -> Messaging:
    # A pure consumer: it owns no stream and publishes nothing (no outbox). The producers
    # declare ORDERS_EVENTS, PAYMENTS_EVENTS and SHIPPING_EVENTS.
    return Messaging(streams=[], outbox=False, consumers=consumer_specs())


@asynccontextmanager
async def bootstrap(ctx: ServiceContext) -> AsyncIterator[None]:
    assert isinstance(ctx.settings, OrderHistorySettings)
    yield


def create_app(settings: OrderHistorySettings | None = None, *,
               key_source: Callable[[ServiceContext], KeySource] | None = None) -> FastAPI:
    settings = settings or OrderHistorySettings()
    return create_service_app(
        settings, routers=[router], bootstrap=bootstrap, key_source=key_source,
        messaging=messaging(settings), title="mercato order_history",
        description="Every order with its payment and shipment, as one read model "
                    "built from the orders, payments and shipping events.")
