"""order_history: the order view and the inbox

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op
from chassis.messaging.tables import create_inbox
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_view",
        sa.Column("order_id", sa.String(200), primary_key=True),
        sa.Column("customer_id", sa.String(200)),
        sa.Column("status", sa.String(20)),
        sa.Column("total", sa.Numeric()),
        sa.Column("currency", sa.String(3)),
        sa.Column("lines", postgresql.JSONB()),
        sa.Column("reason", sa.Text()),
        sa.Column("payment_status", sa.String(20)),
        sa.Column("amount_captured", sa.Numeric()),
        sa.Column("amount_refunded", sa.Numeric()),
        sa.Column("shipment_status", sa.String(20)),
        sa.Column("tracking_number", sa.String(64)),
        sa.Column("placed_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('PENDING', 'APPROVED', 'REJECTED', 'CANCELLED')",
                           name="ck_order_view_status"),
        sa.CheckConstraint("payment_status IN ('AUTHORIZED', 'CAPTURED', 'REFUNDED', "
                           "'VOIDED', 'DECLINED')", name="ck_order_view_payment_status"),
        sa.CheckConstraint("shipment_status IN ('CREATED', 'DISPATCHED', 'IN_TRANSIT', "
                           "'DELIVERED', 'FAILED', 'CANCELLED')",
                           name="ck_order_view_shipment_status"),
    )
    op.create_index("ix_order_view_customer", "order_view", ["customer_id", "placed_at"])
    create_inbox(op)


def downgrade() -> None:
    op.drop_table("inbox")
    op.drop_table("order_view")
