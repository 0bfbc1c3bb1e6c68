"""cart: cart items, checkouts, inbox

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op
from chassis.messaging.tables import create_inbox

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cart_items",
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("product_id", sa.String(200), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Numeric(18, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("available", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("customer_id", "product_id", name="pk_cart_items"),
        sa.CheckConstraint("quantity BETWEEN 1 AND 100", name="ck_cart_items_quantity"),
        sa.CheckConstraint("unit_price >= 0", name="ck_cart_items_unit_price"),
    )
    op.create_index("ix_cart_items_product", "cart_items", ["product_id"])
    op.create_table(
        "checkouts",
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("customer_id", "idempotency_key", name="pk_checkouts"),
    )
    create_inbox(op)


def downgrade() -> None:
    op.drop_table("inbox")
    op.drop_table("checkouts")
    op.drop_table("cart_items")
