"""Payments persistence: rows in, domain objects out. One session = one unit of work.

Every command for a payment first takes a transaction-scoped advisory lock on its id, so two
commands for one payment (duplicates, or a void racing its authorize) run one after the
other even before the payment row exists.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from payments.adapters.orm import ledger, payments
from payments.domain.model import LedgerEntry, Payment

_PAYMENT_LOCK_SPACE = 7244
_LOCK_PAYMENT = text("SELECT pg_advisory_xact_lock(:space, hashtext(:id))")


def _payment(row: Row[Any]) -> Payment:
    return Payment(payment_id=row.payment_id, order_id=row.order_id, status=row.status,
                   amount=row.amount, currency=row.currency, card_last4=row.card_last4,
                   provider_ref=row.provider_ref, reason=row.reason,
                   created_at=row.created_at, updated_at=row.updated_at)


class PaymentsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self, payment_id: str) -> None:
        await self.session.execute(_LOCK_PAYMENT, {"space": _PAYMENT_LOCK_SPACE,
                                                   "id": payment_id})

    async def get(self, payment_id: str) -> Payment | None:
        row = (await self.session.execute(
            select(payments).where(payments.c.payment_id == payment_id))).first()
        return _payment(row) if row else None

    async def for_order(self, order_id: str) -> list[Payment]:
        rows = (await self.session.execute(
            select(payments).where(payments.c.order_id == order_id)
            .order_by(payments.c.created_at, payments.c.payment_id))).all()
        return [_payment(r) for r in rows]

    async def add(self, p: Payment) -> None:
        await self.session.execute(payments.insert().values(
            payment_id=p.payment_id, order_id=p.order_id, status=p.status, amount=p.amount,
            currency=p.currency, card_last4=p.card_last4, provider_ref=p.provider_ref,
            reason=p.reason, created_at=p.created_at, updated_at=p.updated_at))

    async def save(self, p: Payment) -> None:
        await self.session.execute(
            update(payments).where(payments.c.payment_id == p.payment_id)
            .values(status=p.status, provider_ref=p.provider_ref, reason=p.reason,
                    updated_at=p.updated_at))

    async def add_entry(self, e: LedgerEntry) -> None:
        await self.session.execute(ledger.insert().values(
            payment_id=e.payment_id, order_id=e.order_id, kind=e.kind, amount=e.amount,
            currency=e.currency, created_at=e.created_at))

    async def entries_for_order(self, order_id: str) -> list[LedgerEntry]:
        rows = (await self.session.execute(
            select(ledger).where(ledger.c.order_id == order_id).order_by(ledger.c.id))).all()
        return [LedgerEntry(r.payment_id, r.order_id, r.kind, r.amount, r.currency,
                            r.created_at) for r in rows]
