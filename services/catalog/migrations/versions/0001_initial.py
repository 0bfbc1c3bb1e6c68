"""catalog: categories, products with a generated search vector, meta flags

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "categories",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("slug", sa.String(63), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
    )
    op.create_table(
        "products",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("sku", sa.String(40), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("category_id", sa.Uuid(), sa.ForeignKey("categories.id"), nullable=False),
        sa.Column("price_amount", sa.Numeric(16, 2), nullable=False),
        sa.Column("price_currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="active"),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("search", postgresql.TSVECTOR(), sa.Computed(
            "to_tsvector('simple', name || ' ' || description || ' ' || sku)", persisted=True)),
        sa.CheckConstraint("price_amount > 0", name="ck_products_price_positive"),
        sa.CheckConstraint("status IN ('active', 'discontinued')", name="ck_products_status"),
    )
    op.create_index("ix_products_search", "products", ["search"], postgresql_using="gin")
    op.create_index("ix_products_category_status", "products", ["category_id", "status"])
    op.create_table(
        "catalog_meta",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("catalog_meta")
    op.drop_table("products")
    op.drop_table("categories")
