"""orders: product_replica, the catalog's prices kept in orders (ADR 0036)

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
    # Starts empty: each product is filled by its next catalog event or by the catalog call
    # of the first order that names it.
    op.create_table(
        "product_replica",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("sku", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("price", sa.Numeric(18, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("details_version", sa.BigInteger(), nullable=False),
        sa.Column("price_version", sa.BigInteger(), nullable=False),
        sa.Column("status_version", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint("price >= 0", name="ck_product_replica_price"),
    )


def downgrade() -> None:
    op.drop_table("product_replica")
