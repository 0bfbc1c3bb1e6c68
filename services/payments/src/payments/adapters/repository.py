"""Payments persistence: rows in, domain objects out. One session = one unit of work.

Every command for a payment first takes a transaction-scoped advisory lock on its id, so two
commands for one payment (duplicates, or a void racing its authorize) run one after the
other even before the payment row exists.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments.adapters.orm import ledger, payment_methods, payments
from payments.domain.model import LedgerEntry, Payment, PaymentMethod

_PAYMENT_LOCK_SPACE = 7244
_LOCK_PAYMENT = text("SELECT pg_advisory_xact_lock(:space, hashtext(:id))")


def _payment(row: Row[Any]) -> Payment:
    return Payment(payment_id=row.payment_id, order_id=row.order_id, status=row.status,
                   amount=row.amount, currency=row.currency, card_last4=row.card_last4,
                   provider_ref=row.provider_ref, reason=row.reason,
                   created_at=row.created_at, updated_at=row.updated_at,
                   payment_method_id=row.payment_method_id)


def _method(row: Row[Any]) -> PaymentMethod:
    return PaymentMethod(id=row.id, customer_id=row.customer_id, last4=row.last4,
                         brand=row.brand, created_at=row.created_at)


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
            reason=p.reason, created_at=p.created_at, updated_at=p.updated_at,
            payment_method_id=p.payment_method_id))

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

    # -- payment methods ---------------------------------------------------------------------

    async def add_method(self, m: PaymentMethod) -> PaymentMethod:
        """Record the method (the provider answers a repeat with the same id): the row as
        stored, which is the first one recorded under that id."""
        await self.session.execute(insert(payment_methods).values(
            id=m.id, customer_id=m.customer_id, last4=m.last4, brand=m.brand,
            created_at=m.created_at).on_conflict_do_nothing(index_elements=["id"]))
        found = await self.method(m.id)
        assert found is not None  # inserted now, or by an earlier identical request
        return found

    async def method(self, method_id: str) -> PaymentMethod | None:
        row = (await self.session.execute(
            select(payment_methods).where(payment_methods.c.id == method_id))).first()
        return _method(row) if row else None

    async def methods_of(self, customer_id: str) -> list[PaymentMethod]:
        rows = (await self.session.execute(
            select(payment_methods).where(payment_methods.c.customer_id == customer_id)
            .order_by(payment_methods.c.created_at.desc(), payment_methods.c.id))).all()
        return [_method(r) for r in rows]
