"""catalog: a search vector that finds SKUs like MUG-001 by any part

PostgreSQL's parser read "MUG-001" as the word mug and the number -001, so a search for
"001" or "MUG-001" found nothing. A generated column's expression cannot be changed in
place on every supported PostgreSQL, so the column and its index are made again.

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copies: a migration must keep doing what it did when the models change later.
NEW_VECTOR = (
    "to_tsvector('simple', translate(name || ' ' || description, '-', ' ')) || "
    "array_to_tsvector(array_remove(regexp_split_to_array(lower(sku), '[^[:alnum:]]+'), '') "
    "|| lower(sku))")
OLD_VECTOR = "to_tsvector('simple', name || ' ' || description || ' ' || sku)"


def _replace_vector(expression: str) -> None:
    op.drop_index("ix_products_search", table_name="products")
    op.execute("ALTER TABLE products DROP COLUMN search")
    op.execute(f"ALTER TABLE products ADD COLUMN search tsvector "
               f"GENERATED ALWAYS AS ({expression}) STORED")
    op.create_index("ix_products_search", "products", ["search"], postgresql_using="gin")


def upgrade() -> None:
    _replace_vector(NEW_VECTOR)


def downgrade() -> None:
    _replace_vector(OLD_VECTOR)
