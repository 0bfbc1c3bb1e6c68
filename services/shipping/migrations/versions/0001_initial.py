"""shipping: shipments, their status history, outbox, inbox

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op
from chassis.messaging.tables import create_inbox, create_outbox
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUS_CHECK = "status IN ('CREATED', 'DISPATCHED', 'IN_TRANSIT', 'DELIVERED', 'CANCELLED')"


def upgrade() -> None:
    op.create_table(
        "shipments",
        sa.Column("shipment_id", sa.String(200), primary_key=True),
        sa.Column("order_id", sa.String(200), nullable=False),
        sa.Column("customer_id", sa.String(200)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("tracking_number", sa.String(32)),
        sa.Column("address", postgresql.JSONB()),
        sa.Column("lines", postgresql.JSONB(), nullable=False,
                  server_default=sa.text("'[]'::jsonb")),
        sa.Column("next_move_at", sa.DateTime(timezone=True)),
        sa.Column("reason", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.UniqueConstraint("tracking_number", name="uq_shipments_tracking_number"),
        sa.CheckConstraint(STATUS_CHECK, name="ck_shipments_status"),
    )
    op.create_index("ix_shipments_order_id", "shipments", ["order_id"])
    op.create_index("ix_shipments_customer_id", "shipments", ["customer_id", "created_at"])
    op.create_index("ix_shipments_next_move", "shipments", ["next_move_at"],
                    postgresql_where=sa.text("next_move_at IS NOT NULL"))
    op.create_table(
        "shipment_history",
        sa.Column("shipment_id", sa.String(200),
                  sa.ForeignKey("shipments.shipment_id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shipment_id", "status"),
        sa.CheckConstraint(STATUS_CHECK, name="ck_shipment_history_status"),
    )
    create_outbox(op)
    create_inbox(op)


def downgrade() -> None:
    op.drop_table("inbox")
    op.drop_table("outbox")
    op.drop_table("shipment_history")
    op.drop_table("shipments")
