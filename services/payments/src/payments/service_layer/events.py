"""Translate payment outcomes into integration events (contracts) staged in the outbox.

Staged in the caller's transaction: the event exists if and only if the change committed.
The correlation id is the order (the saga); the causation id is the command behind the event.
Events carry the card's last four digits only, never the number.
"""

from __future__ import annotations

from chassis.messaging.outbox import stage
from contracts.payments.v1 import (
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    PaymentRefunded,
    PaymentVoided,
)
from sqlalchemy.ext.asyncio import AsyncSession

from payments.domain.model import Payment, money_text


def _money(p: Payment) -> dict[str, str]:
    assert p.amount is not None and p.currency is not None
    return {"amount": money_text(p.amount), "currency": p.currency}


async def authorized(session: AsyncSession, p: Payment, *, causation_id: str | None) -> None:
    await stage(session, PaymentAuthorized(
        payment_id=p.payment_id, order_id=p.order_id, card_last4=p.card_last4 or "",
        **_money(p)), correlation_id=p.order_id, causation_id=causation_id)


async def declined(session: AsyncSession, p: Payment, *, causation_id: str | None) -> None:
    await stage(session, PaymentDeclined(
        payment_id=p.payment_id, order_id=p.order_id, reason=p.reason or "declined"),
        correlation_id=p.order_id, causation_id=causation_id)


async def captured(session: AsyncSession, p: Payment, *, causation_id: str | None) -> None:
    await stage(session, PaymentCaptured(payment_id=p.payment_id, order_id=p.order_id,
                                         **_money(p)),
                correlation_id=p.order_id, causation_id=causation_id)


async def voided(session: AsyncSession, p: Payment, *, causation_id: str | None) -> None:
    await stage(session, PaymentVoided(payment_id=p.payment_id, order_id=p.order_id),
                correlation_id=p.order_id, causation_id=causation_id)


async def refunded(session: AsyncSession, p: Payment, *, causation_id: str | None) -> None:
    await stage(session, PaymentRefunded(payment_id=p.payment_id, order_id=p.order_id,
                                         **_money(p)),
                correlation_id=p.order_id, causation_id=causation_id)


async def failed(session: AsyncSession, *, payment_id: str, order_id: str, operation: str,
                 reason: str, causation_id: str | None) -> None:
    await stage(session, PaymentFailed(payment_id=payment_id, order_id=order_id,
                                       operation=operation, reason=reason),
                correlation_id=order_id, causation_id=causation_id)
