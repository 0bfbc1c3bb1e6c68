"""payments: payments, ledger entries, outbox, inbox

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op
from chassis.messaging.tables import create_inbox, create_outbox

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("payment_id", sa.String(200), primary_key=True),
        sa.Column("order_id", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("amount", sa.Numeric(16, 2)),
        sa.Column("currency", sa.String(3)),
        sa.Column("card_last4", sa.String(4)),
        sa.Column("provider_ref", sa.String(200)),
        sa.Column("reason", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint("status IN ('requested', 'authorized', 'declined', 'captured', "
                           "'voided', 'refunded')", name="ck_payments_status"),
        sa.CheckConstraint("amount IS NULL OR amount > 0", name="ck_payments_amount_positive"),
    )
    op.create_index("ix_payments_order_id", "payments", ["order_id"])
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("payment_id", sa.String(200), sa.ForeignKey("payments.payment_id"),
                  nullable=False),
        sa.Column("order_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("amount", sa.Numeric(16, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint("kind IN ('authorize', 'capture', 'void', 'refund')",
                           name="ck_ledger_entries_kind"),
        sa.CheckConstraint("amount > 0", name="ck_ledger_entries_amount_positive"),
        sa.UniqueConstraint("payment_id", "kind", name="uq_ledger_entries_payment_kind"),
    )
    op.create_index("ix_ledger_entries_order_id", "ledger_entries", ["order_id"])
    op.create_index("uq_ledger_entries_one_capture_per_order", "ledger_entries", ["order_id"],
                    unique=True, postgresql_where=sa.text("kind = 'capture'"))
    create_outbox(op)
    create_inbox(op)


def downgrade() -> None:
    op.drop_table("inbox")
    op.drop_table("outbox")
    op.drop_table("ledger_entries")
    op.drop_table("payments")
