"""Wiring of the payments service: ``create_app`` for the process, ``bootstrap`` for start-up,
``messaging`` for what it produces and consumes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from chassis.app import create_service_app
from chassis.auth import KeySource
from chassis.messaging.runtime import Messaging, StreamSpec
from chassis.messaging.streams import commands_stream_name, events_stream_name
from contracts.shipping.v1 import CreateShipment
from fastapi import FastAPI

from payments.adapters.provider import ProviderClient
from payments.entrypoints.api import router
from payments.entrypoints.consumers import consumer_specs
from payments.entrypoints.deps import PaymentsContext, PaymentsWiring
from payments.service_layer.handlers import Provider
from payments.settings import PaymentsSettings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# payments owns its events stream and its command work queue, and publishes via its outbox.
STREAMS = [StreamSpec(events_stream_name("payments"), ["payments.events.>"]),
           StreamSpec(commands_stream_name("payments"), ["payments.commands.>"],
                      work_queue=True)]
# The order saga's charge carries its shipment's command, which payments sends once the charge
# is captured (ADR 0053, chassis.messaging.forwarding): the broker lets it publish there.
SENDS = [CreateShipment.subject()]


def provider_client(settings: PaymentsSettings) -> ProviderClient:
    """Makes no connection yet: the HTTP session opens on the first call, inside the loop."""
    return ProviderClient(settings.provider_url, timeout_s=settings.provider_timeout_s,
                          attempts=settings.provider_attempts,
                          retry_delay_s=settings.provider_retry_delay_s,
                          api_token=(settings.provider_api_token.get_secret_value()
                                     if settings.provider_api_token else None))


def messaging(settings: PaymentsSettings, provider: Provider | None = None) -> Messaging:
    return Messaging(streams=STREAMS, outbox=True, sends=SENDS,
                     consumers=consumer_specs(provider or provider_client(settings)))


def bootstrap_for(provider: ProviderClient) -> Callable[
        [PaymentsContext], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def bootstrap(ctx: PaymentsContext) -> AsyncIterator[None]:
        ctx.wire(PaymentsWiring(provider=provider))
        try:
            yield
        finally:
            await provider.close()

    return bootstrap


def create_app(settings: PaymentsSettings | None = None, *,
               key_source: Callable[[PaymentsContext], KeySource] | None = None) -> FastAPI:
    settings = settings or PaymentsSettings()
    provider = provider_client(settings)
    return create_service_app(
        settings, routers=[router], bootstrap=bootstrap_for(provider), key_source=key_source,
        messaging=messaging(settings, provider),
        description="Payment intents, their ledger, and calls to the card provider.")
