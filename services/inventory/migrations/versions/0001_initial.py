"""inventory: stock, reservations and their lines, outbox, inbox

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


def upgrade() -> None:
    op.create_table(
        "stock",
        sa.Column("sku", sa.String(64), primary_key=True),
        sa.Column("on_hand", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("reserved", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint("on_hand >= 0", name="ck_stock_on_hand_nonnegative"),
        sa.CheckConstraint("reserved >= 0", name="ck_stock_reserved_nonnegative"),
        sa.CheckConstraint("reserved <= on_hand", name="ck_stock_reserved_within_on_hand"),
    )
    op.create_table(
        "reservations",
        sa.Column("reservation_id", sa.String(200), primary_key=True),
        sa.Column("order_id", sa.String(200)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("reason", sa.Text()),
        sa.Column("short_skus", postgresql.ARRAY(sa.Text()), nullable=False,
                  server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint("status IN ('reserved', 'committed', 'released', 'failed')",
                           name="ck_reservations_status"),
    )
    op.create_index("ix_reservations_live_expiry", "reservations", ["expires_at"],
                    postgresql_where=sa.text("status = 'reserved'"))
    op.create_table(
        "reservation_lines",
        sa.Column("reservation_id", sa.String(200),
                  sa.ForeignKey("reservations.reservation_id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("reservation_id", "sku"),
        sa.CheckConstraint("quantity > 0", name="ck_reservation_lines_quantity_positive"),
    )
    create_outbox(op)
    create_inbox(op)


def downgrade() -> None:
    op.drop_table("inbox")
    op.drop_table("outbox")
    op.drop_table("reservation_lines")
    op.drop_table("reservations")
    op.drop_table("stock")
