"""Wiring of the order_history service: ``create_app`` for the process (no ``bootstrap``:
nothing to wire beyond the chassis), ``messaging`` for what it consumes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from chassis.app import create_service_app
from chassis.auth import KeySource
from chassis.messaging.runtime import Messaging
from fastapi import FastAPI

from order_history.entrypoints.api import router
from order_history.entrypoints.consumers import consumer_specs
from order_history.entrypoints.deps import OrderHistoryContext
from order_history.settings import OrderHistorySettings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def messaging(settings: OrderHistorySettings) -> Messaging:
    # A pure consumer: it owns no stream and publishes nothing (no outbox). The producers
    # declare ORDERS_EVENTS, PAYMENTS_EVENTS and SHIPPING_EVENTS.
    return Messaging(streams=[], outbox=False, consumers=consumer_specs())


def create_app(settings: OrderHistorySettings | None = None, *,
               key_source: Callable[[OrderHistoryContext], KeySource] | None = None) -> FastAPI:
    settings = settings or OrderHistorySettings()
    return create_service_app(
        settings, routers=[router], key_source=key_source,
        messaging=messaging(settings), title="mercato order_history",
        description="Every order with its payment and shipment, as one read model "
                    "built from the orders, payments and shipping events.")
