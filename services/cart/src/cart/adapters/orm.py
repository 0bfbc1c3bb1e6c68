"""Cart tables (SQLAlchemy Core) and the inbox.

``cart_items`` is keyed by (customer, product): a customer's cart is just their rows, so
there is no cart row to create or to lose. ``checkouts`` remembers which order each
(customer, Idempotency-Key) became; its primary key makes recording it race-safe.
"""

from __future__ import annotations

from chassis.messaging.tables import inbox_table
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    func,
    true,
)

metadata = MetaData()

ID_LENGTH = 200
SKU_LENGTH = 64
NAME_LENGTH = 200

cart_items = Table(
    "cart_items", metadata,
    Column("customer_id", String(ID_LENGTH), nullable=False),
    Column("product_id", String(ID_LENGTH), nullable=False),
    Column("sku", String(SKU_LENGTH), nullable=False),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Numeric(18, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    # False once the catalog discontinued the product: shown, not counted, not orderable.
    Column("available", Boolean, nullable=False, server_default=true()),
    Column("added_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("customer_id", "product_id", name="pk_cart_items"),
    CheckConstraint("quantity BETWEEN 1 AND 100", name="ck_cart_items_quantity"),
    CheckConstraint("unit_price >= 0", name="ck_cart_items_unit_price"),
)
# A catalog event updates every cart holding the product.
Index("ix_cart_items_product", cart_items.c.product_id)

checkouts = Table(
    "checkouts", metadata,
    Column("customer_id", String(ID_LENGTH), nullable=False),
    Column("idempotency_key", String(ID_LENGTH), nullable=False),
    # sha256 of the checkout body: the same key with another body is refused.
    Column("request_hash", String(64), nullable=False),
    Column("order_id", String(ID_LENGTH), nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("customer_id", "idempotency_key", name="pk_checkouts"),
)

inbox = inbox_table(metadata)
