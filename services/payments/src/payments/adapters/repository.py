"""Payments persistence: rows in, domain objects out. One session = one unit of work.

Every command for a payment first takes a transaction-scoped advisory lock on its id, so two
commands for one payment (duplicates, or a void racing its authorize) run one after the
other even before the payment row exists.
"""

from __future__ import annotations

from typing import Any

from chassis.db import (
    advisory_xact_lock,
    as_columns,
    driver_fetch,
    flush_pending,
    inserting,
    last_per_key,
    register_deferred,
    write_at_commit,
)
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments.adapters.orm import ledger, payment_methods, payments
from payments.domain.model import LedgerEntry, Payment, PaymentMethod

# Two-key advisory locks live in their own key space, apart from the migrations' one-key lock.
PAYMENT_LOCK_SPACE = 7244

# A command's statements (authorize, capture, void, refund) run on asyncpg directly
# (chassis.db.driver_fetch, ADR 0046): they run for every order. Reads for the API and the
# vaulting of a card stay on SQLAlchemy Core.
_PAYMENT_COLUMNS = ("payment_id", "order_id", "status", "amount", "currency", "card_last4",
                    "provider_ref", "reason", "created_at", "updated_at", "payment_method_id")
_METHOD_COLUMNS = ("id", "customer_id", "last4", "brand", "created_at")
# The column lists are constants: nothing from outside reaches these strings.
_PAYMENT = f"SELECT {', '.join(_PAYMENT_COLUMNS)} FROM payments WHERE payment_id = $1"  # noqa: S608
_METHOD = f"SELECT {', '.join(_METHOD_COLUMNS)} FROM payment_methods WHERE id = $1"  # noqa: S608
# A charge's two reads in one round trip (ADR 0055): the payment, if any, and the method
# (its columns prefixed m_).
_PAYMENT_AND_METHOD = (
    "SELECT " + ", ".join([f"p.{c}" for c in _PAYMENT_COLUMNS]  # noqa: S608
                          + [f"m.{c} AS m_{c}" for c in _METHOD_COLUMNS])
    + " FROM (SELECT 1) AS one LEFT JOIN payments p ON p.payment_id = $1 "
    "LEFT JOIN payment_methods m ON m.id = $2")

# What a command changes (the payment, its ledger entries) is written at commit, with its
# event, as ONE statement (chassis.db.write_at_commit, ADR 0052): a charge was a payment, two
# ledger entries and its event, four round trips. Every read here writes what is pending
# first, so a later message of a consumer's batch (one transaction) reads what an earlier one
# changed.
_ADD_KIND = "payments.payment"
_SAVE_KIND = "payments.payment_change"
_ENTRY_KIND = "payments.ledger_entry"
_KINDS = (_ADD_KIND, _SAVE_KIND, _ENTRY_KIND)
_SAVE_PAYMENTS = (
    "UPDATE payments SET status = x.status, provider_ref = x.provider_ref, reason = x.reason, "
    "updated_at = x.updated_at "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) "
    "AS x(payment_id, status, provider_ref, reason, updated_at) "
    "WHERE payments.payment_id = x.payment_id")


register_deferred(_ADD_KIND, inserting("payments", _PAYMENT_COLUMNS))
register_deferred(_SAVE_KIND, lambda rows: (_SAVE_PAYMENTS, as_columns(last_per_key(rows))))
register_deferred(_ENTRY_KIND, inserting("ledger_entries", (
    "payment_id", "order_id", "kind", "amount", "currency", "created_at")))


def _payment(row: Any) -> Payment:
    """A payments row: a SQLAlchemy Row or an asyncpg Record."""
    m = getattr(row, "_mapping", row)
    return Payment(payment_id=m["payment_id"], order_id=m["order_id"], status=m["status"],
                   amount=m["amount"], currency=m["currency"], card_last4=m["card_last4"],
                   provider_ref=m["provider_ref"], reason=m["reason"],
                   created_at=m["created_at"], updated_at=m["updated_at"],
                   payment_method_id=m["payment_method_id"])


def _method(row: Any, prefix: str = "") -> PaymentMethod:
    """A payment_methods row (its columns named with ``prefix``): a SQLAlchemy Row or an
    asyncpg Record."""
    m = getattr(row, "_mapping", row)
    return PaymentMethod(id=m[prefix + "id"], customer_id=m[prefix + "customer_id"],
                         last4=m[prefix + "last4"], brand=m[prefix + "brand"],
                         created_at=m[prefix + "created_at"])


class PaymentsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self, payment_id: str) -> None:
        await advisory_xact_lock(self.session, PAYMENT_LOCK_SPACE, payment_id)

    async def get(self, payment_id: str) -> Payment | None:
        await flush_pending(self.session, _KINDS)
        rows = await driver_fetch(self.session, _PAYMENT, payment_id)
        return _payment(rows[0]) if rows else None

    async def get_with_method(self, payment_id: str,
                              method_id: str) -> tuple[Payment | None, PaymentMethod | None]:
        """``get(payment_id)`` and ``method(method_id)`` in one round trip."""
        await flush_pending(self.session, _KINDS)
        [row] = await driver_fetch(self.session, _PAYMENT_AND_METHOD, payment_id, method_id)
        payment = _payment(row) if row["payment_id"] is not None else None
        return payment, _method(row, "m_") if row["m_id"] is not None else None

    async def for_order(self, order_id: str) -> list[Payment]:
        await flush_pending(self.session, _KINDS)
        rows = (await self.session.execute(
            select(payments).where(payments.c.order_id == order_id)
            .order_by(payments.c.created_at, payments.c.payment_id))).all()
        return [_payment(r) for r in rows]

    async def add(self, p: Payment) -> None:
        """Written at commit (or at the next read here)."""
        await write_at_commit(self.session, _ADD_KIND, (
            p.payment_id, p.order_id, p.status, p.amount, p.currency, p.card_last4,
            p.provider_ref, p.reason, p.created_at, p.updated_at, p.payment_method_id))

    async def save(self, p: Payment) -> None:
        """Written at commit (or at the next read here); after the payment's insert if that
        still waits: one statement cannot insert a row and update it."""
        await flush_pending(self.session, (_ADD_KIND,))
        await write_at_commit(self.session, _SAVE_KIND, (
            p.payment_id, p.status, p.provider_ref, p.reason, p.updated_at))

    async def add_entry(self, e: LedgerEntry) -> None:
        """Written at commit (or at the next read here), in the order added."""
        await write_at_commit(self.session, _ENTRY_KIND, (
            e.payment_id, e.order_id, e.kind, e.amount, e.currency, e.created_at))

    async def entries_for_order(self, order_id: str) -> list[LedgerEntry]:
        await flush_pending(self.session, _KINDS)
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
        await flush_pending(self.session, _KINDS)
        rows = await driver_fetch(self.session, _METHOD, method_id)
        return _method(rows[0]) if rows else None

    async def methods_of(self, customer_id: str) -> list[PaymentMethod]:
        await flush_pending(self.session, _KINDS)
        rows = (await self.session.execute(
            select(payment_methods).where(payment_methods.c.customer_id == customer_id)
            .order_by(payment_methods.c.created_at.desc(), payment_methods.c.id))).all()
        return [_method(r) for r in rows]
