"""inventory: idempotent stock adjustments (the migration's stock transfers, ADR 0034)

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stock_adjustments",
        sa.Column("adjustment_id", sa.String(200), primary_key=True),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("on_hand", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint("outcome IN ('applied', 'refused')",
                           name="ck_stock_adjustments_outcome"),
        sa.CheckConstraint("delta <> 0", name="ck_stock_adjustments_delta_nonzero"),
    )
    op.create_index("ix_stock_adjustments_sku", "stock_adjustments", ["sku"])


def downgrade() -> None:
    op.drop_table("stock_adjustments")
