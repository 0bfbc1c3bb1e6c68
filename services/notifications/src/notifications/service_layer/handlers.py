"""Notifications use cases.

The event handlers only queue: they run inside the consumer's inbox transaction and INSERT
one row per (order, kind) -- never an SMTP call there, so a slow or dead mail server can
neither hold a transaction open nor make a redelivery send twice. The sender
(``send_due``) mails what is queued, each result recorded at once by a statement of its own.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeAlias

import structlog
from chassis.clock import utc_now
from chassis.db import Database, UnitOfWork
from chassis.errors import dependency_unavailable
from chassis.messaging.consumer import dropped
from contracts.orders.v1 import OrderApproved, OrderCancelled, OrderPlaced, OrderRejected
from contracts.shipping.v1 import ShipmentStatusChanged
from sqlalchemy.ext.asyncio import AsyncSession

from notifications.adapters.repository import NotificationsRepository, SenderRepository
from notifications.adapters.smtp import Mailer, OutgoingMail
from notifications.domain.model import (
    ORDER_APPROVED,
    ORDER_CANCELLED,
    ORDER_PLACED,
    ORDER_REJECTED,
    Facts,
    Notification,
    RetryPolicy,
    render,
    shipment_kind,
)

log = structlog.get_logger("notifications")

OrderEvent: TypeAlias = OrderPlaced | OrderApproved | OrderRejected | OrderCancelled


# -- events (from the notifications-orders and notifications-shipping consumers) ---------------

def order_facts(event: OrderEvent) -> tuple[str, Facts]:
    """The kind of notification an order event asks for, and what its email may say."""
    if isinstance(event, OrderPlaced):
        return ORDER_PLACED, Facts(event.order_id, total=event.total, currency=event.currency,
                                   items=sum(line.quantity for line in event.lines))
    if isinstance(event, OrderApproved):
        return ORDER_APPROVED, Facts(event.order_id, total=event.total,
                                     currency=event.currency)
    if isinstance(event, OrderRejected):
        return ORDER_REJECTED, Facts(event.order_id, reason=event.reason)
    return ORDER_CANCELLED, Facts(event.order_id, reason=event.reason)


async def on_order_event(session: AsyncSession, event: OrderEvent) -> bool:
    """Learn the order's email (when the event has it) and queue its notification once.

    True if a notification was queued, False if this (order, kind) had one already."""
    repo = NotificationsRepository(session)
    recipient = event.customer_email or await repo.email_for(event.order_id)
    kind, facts = order_facts(event)
    # The email, when the event has it, is learnt in the same statement (ADR 0052).
    queued = await repo.enqueue(event.order_id, kind, recipient, render(kind, facts),
                                customer_id=event.customer_id if event.customer_email else None)
    _queued_or_exists(queued, event.order_id, kind, recipient)
    return queued


async def on_shipment_status(session: AsyncSession, event: ShipmentStatusChanged) -> bool:
    """Queue the shipment's email for DISPATCHED and DELIVERED (IN_TRANSIT sends none).

    The event carries no email: the recipient is the one learnt from the order events, or
    resolved by the sender later (failed with ``unknown_recipient`` if never learnt)."""
    kind = shipment_kind(event.status)
    if kind is None:
        return False
    repo = NotificationsRepository(session)
    recipient = await repo.email_for(event.order_id)
    mail = render(kind, Facts(event.order_id, tracking_number=event.tracking_number))
    queued = await repo.enqueue(event.order_id, kind, recipient, mail)
    _queued_or_exists(queued, event.order_id, kind, recipient)
    return queued


def _queued_or_exists(queued: bool, order_id: str, kind: str, recipient: str | None) -> None:
    if queued:
        log.info("notification_queued", order_id=order_id, kind=kind,
                 recipient_known=recipient is not None)
    else:  # the event again under a new message id (re-published): logged and counted
        dropped("notification_exists", f"{order_id}/{kind} is queued or sent already")


# -- the sender --------------------------------------------------------------------------------

@dataclass
class SendRound:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    lost: int = 0  # claimed, then taken over by another sender before it was sent


async def send_due(db: Database, mailer: Mailer, policy: RetryPolicy, *, me: str,
                   now: datetime | None = None, limit: int = 20,
                   lease: timedelta = timedelta(seconds=60),
                   stale_after: timedelta = timedelta(seconds=10),
                   order_wait: timedelta = timedelta(seconds=120)) -> SendRound:
    """One sender round as ``me``: claim due notifications (the first queued one of each
    order, once the one it follows exists or it waited ``order_wait``), mail each, record
    each result at once.

    At-least-once: the row is marked sent by a statement of its own right after the SMTP
    server accepted it. If the process dies between the two, the email is sent again (with
    the same Message-ID) once its claim is released: at the sender's restart, or by another
    sender when its heartbeat is ``stale_after`` old. That is the only way a notification is mailed
    twice: before each send the claim is checked to be still ours.

    That check rides on the statement just before the send: the claim itself for the
    first email of the round (it made the rows ours a moment ago), the previous email's
    mark for the others. A round of n emails is n + 1 transactions, not 2n + 1: the
    notification sender was a quarter of all the platform's transactions per order. Each is
    one statement, sent alone: no BEGIN or COMMIT round trips (``Database.fetch_once``)."""
    now = now or utc_now()
    sender = SenderRepository(db)
    claimed = await sender.claim_due(now, limit, lease, me=me, stale_after=stale_after,
                                     order_wait=order_wait)
    result = SendRound(claimed=len(claimed))
    sendable = []
    for n in claimed:
        if n.recipient is None:  # the claim failed it: unknown_recipient
            result.failed += 1
            log.warning("notification_failed", notification_id=n.id, order_id=n.order_id,
                        kind=n.kind, error="unknown_recipient")
        else:
            sendable.append(n)
    # Whether the claim on the next email is still ours, when the last statement said so.
    known_mine: bool | None = True
    for i, n in enumerate(sendable):
        mine, known_mine = known_mine, None
        if mine is None:
            mine = await sender.still_mine(n.id, me)
        if not mine:  # we were paused past our heartbeat and another sender took it
            result.lost += 1
            log.warning("notification_claim_lost", notification_id=n.id, order_id=n.order_id,
                        kind=n.kind)
            continue
        try:
            await mailer.send(OutgoingMail(n.id, n.order_id, n.kind, n.recipient or "",
                                           n.subject, n.body))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            async with db.unit_of_work() as uow:
                repo = NotificationsRepository(uow.session)
                if policy.gives_up(n.attempts):
                    await repo.give_up(n.id, error)
                    result.failed += 1
                else:
                    await repo.retry_later(n.id, utc_now() + policy.delay(n.attempts), error)
                    result.retried += 1
                await uow.commit()
            log.warning("notification_send_failed", notification_id=n.id, order_id=n.order_id,
                        kind=n.kind, attempt=n.attempts, gave_up=policy.gives_up(n.attempts),
                        error=error)
            continue
        following = sendable[i + 1].id if i + 1 < len(sendable) else None
        known_mine = await _record_sent(db, n.id, within=lease, me=me, check_next=following)
        result.sent += 1
        log.info("notification_sent", notification_id=n.id, order_id=n.order_id, kind=n.kind)
    return result


async def _record_sent(db: Database, notification_id: int, *, within: timedelta, me: str,
                       check_next: int | None = None) -> bool | None:
    """Mark a mailed notification sent, waiting out a database that is down or restarting
    (for as long as the claim's lease): the email is out, and giving up here would release
    the claim and mail it again once the database was back, the only duplicate a PostgreSQL
    restart used to cause. Only this process's death between the send and the mark still
    can (docs: the at-least-once edge). In the same statement, whether the claim on
    ``check_next`` (the email to be sent next) is still ours; None when not asked."""
    deadline = time.monotonic() + within.total_seconds()
    delay = 0.1
    while True:
        try:
            # A statement lost with its connection may have committed: marking again is
            # harmless, and the check is then read again.
            return await SenderRepository(db).mark_sent(notification_id, utc_now(), check_next,
                                                        me)
        except Exception as exc:
            if not dependency_unavailable(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("notification_mark_retried", notification_id=notification_id,
                        error=f"{type(exc).__name__}: {exc}"[:300], retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def register_sender(db: Database, me: str) -> int:
    """A sender starts: beat, and release what a dead predecessor under ``me`` held."""
    async with db.unit_of_work() as uow:
        released = await NotificationsRepository(uow.session).register_sender(me, utc_now())
        await uow.commit()
    if released:
        log.info("sender_claims_released", instance=me, notifications=released)
    return released


async def beat(db: Database, me: str) -> None:
    await SenderRepository(db).beat(me, utc_now())


async def retire_sender(db: Database, me: str) -> int:
    """A sender stops cleanly: release what a round cut short held, and drop the beat."""
    async with db.unit_of_work() as uow:
        released = await NotificationsRepository(uow.session).retire_sender(me, utc_now())
        await uow.commit()
    if released:
        log.info("sender_claims_released", instance=me, notifications=released)
    return released


# -- HTTP use cases ----------------------------------------------------------------------------

async def list_notifications(uow: UnitOfWork, *, order_id: str | None,
                             limit: int) -> list[Notification]:
    async with uow:
        return await NotificationsRepository(uow.session).listing(order_id=order_id,
                                                                  limit=limit)
