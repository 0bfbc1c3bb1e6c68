"""orders: payment_method_replica, the customers' payment methods kept in orders (ADR 0041)

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_method_replica",
        sa.Column("customer_id", sa.String(200), primary_key=True),
        sa.Column("method_id", sa.String(200), primary_key=True),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("payment_method_replica")
