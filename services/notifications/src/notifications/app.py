"""Wiring of the notifications service: ``create_app`` for the process, ``bootstrap`` for
start-up (it runs the sender), ``messaging`` for what it consumes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from chassis.app import create_service_app
from chassis.auth import KeySource
from chassis.messaging.runtime import Messaging
from fastapi import FastAPI

from notifications.adapters.smtp import Mailer, SmtpMailer
from notifications.entrypoints.api import router
from notifications.entrypoints.background import Sender
from notifications.entrypoints.consumers import consumer_specs
from notifications.entrypoints.deps import NotificationsContext
from notifications.settings import NotificationsSettings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def messaging(settings: NotificationsSettings) -> Messaging:
    # A pure consumer: it owns no stream and publishes nothing (no outbox). The streams it
    # reads are declared by their producers, orders and shipping.
    return Messaging(streams=[], outbox=False, consumers=consumer_specs())


def mailer_for(settings: NotificationsSettings) -> Mailer:
    return SmtpMailer(settings.smtp_host, settings.smtp_port, mail_from=settings.mail_from,
                      timeout_s=settings.smtp_timeout_s)


@asynccontextmanager
async def bootstrap(ctx: NotificationsContext) -> AsyncIterator[None]:
    settings = ctx.settings
    if settings.sender_interval_s > 0:
        Sender(ctx.require_db(), mailer_for(settings), settings.retry_policy(),
               me=settings.instance, batch_size=settings.sender_batch_size,
               lease=timedelta(seconds=settings.sender_lease_s),
               stale_after=timedelta(seconds=settings.sender_stale_after_s),
               order_wait=timedelta(seconds=settings.sender_order_wait_s),
               ).declare(ctx.background, interval_s=settings.sender_interval_s,
                         # a send in flight at shutdown may finish (up to the SMTP timeout)
                         stop_timeout_s=settings.smtp_timeout_s + 5)
    yield


def create_app(settings: NotificationsSettings | None = None, *,
               key_source: Callable[[NotificationsContext], KeySource] | None = None) -> FastAPI:
    settings = settings or NotificationsSettings()
    return create_service_app(
        settings, routers=[router], bootstrap=bootstrap, key_source=key_source,
        messaging=messaging(settings),
        description="Emails about orders and shipments, sent through SMTP.")
