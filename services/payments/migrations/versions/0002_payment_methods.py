"""payments: payment_methods (the provider's card tokens per customer), payments.payment_method_id

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_methods",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("brand", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint("last4 ~ '^[0-9]{4}$'", name="ck_payment_methods_last4"),
    )
    op.create_index("ix_payment_methods_customer", "payment_methods",
                    ["customer_id", "created_at"])
    op.add_column("payments", sa.Column("payment_method_id", sa.String(200)))


def downgrade() -> None:
    op.drop_column("payments", "payment_method_id")
    op.drop_table("payment_methods")
