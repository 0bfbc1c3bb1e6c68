"""Payments tables (SQLAlchemy Core). The constraints are the last line of defence: one
ledger entry of each kind per payment, and at most one capture per order. No table has a
column for a card number: cards are the provider vault's tokens (``payment_methods``)."""

from __future__ import annotations

from chassis.messaging.tables import inbox_table, outbox_table
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)

metadata = MetaData()

ID_LENGTH = 200

payments = Table(
    "payments", metadata,
    Column("payment_id", String(ID_LENGTH), primary_key=True),
    Column("order_id", String(ID_LENGTH), nullable=False),
    Column("status", String(20), nullable=False),
    # Null only on a void tombstone (a void that came before any authorize).
    Column("amount", Numeric(16, 2)),
    Column("currency", String(3)),
    Column("card_last4", String(4)),
    Column("provider_ref", String(200)),
    Column("reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The provider's token the authorization was made with (null on a void tombstone).
    Column("payment_method_id", String(ID_LENGTH)),
    CheckConstraint("status IN ('requested', 'authorized', 'declined', 'captured', 'voided', "
                    "'refunded')", name="ck_payments_status"),
    CheckConstraint("amount IS NULL OR amount > 0", name="ck_payments_amount_positive"),
)
Index("ix_payments_order_id", payments.c.order_id)

ledger = Table(
    "ledger_entries", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("payment_id", String(ID_LENGTH), ForeignKey("payments.payment_id"), nullable=False),
    Column("order_id", String(ID_LENGTH), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("amount", Numeric(16, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("kind IN ('authorize', 'capture', 'void', 'refund')",
                    name="ck_ledger_entries_kind"),
    CheckConstraint("amount > 0", name="ck_ledger_entries_amount_positive"),
    UniqueConstraint("payment_id", "kind", name="uq_ledger_entries_payment_kind"),
)
Index("ix_ledger_entries_order_id", ledger.c.order_id)
# Money is taken once per order, whatever the payment ids.
Index("uq_ledger_entries_one_capture_per_order", ledger.c.order_id, unique=True,
      postgresql_where=text("kind = 'capture'"))

# A customer's cards, as tokens of the provider's vault: the number itself is never here.
payment_methods = Table(
    "payment_methods", metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("customer_id", String(ID_LENGTH), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("brand", String(20), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("last4 ~ '^[0-9]{4}$'", name="ck_payment_methods_last4"),
)
Index("ix_payment_methods_customer", payment_methods.c.customer_id, payment_methods.c.created_at)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
