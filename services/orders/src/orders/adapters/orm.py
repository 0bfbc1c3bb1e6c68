"""Orders tables (SQLAlchemy Core), the saga tables, the outbox and the inbox, and the
replicas of the catalog's prices and of the customers' addresses (ADR 0036), and of their payment
methods (ADR 0041).

UNIQUE(customer_id, idempotency_key) is what makes order placement idempotent under
concurrency: the insert of a repeat conflicts and the first order is read back instead.
The card number is never stored here: it lives only in the saga's data until payments
answered, and only its last four digits afterwards.
"""

from __future__ import annotations

from chassis.messaging.tables import inbox_table, outbox_table
from chassis.saga import saga_tables
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

ID_LENGTH = 200
STATUS_CHECK = "status IN ('PENDING', 'APPROVED', 'REJECTED', 'CANCELLED')"

orders = Table(
    "orders", metadata,
    Column("id", Uuid, primary_key=True),
    Column("customer_id", String(ID_LENGTH), nullable=False),
    Column("customer_email", String(320)),
    Column("idempotency_key", String(ID_LENGTH), nullable=False),
    # sha256 of the canonical request: a repeat with another body is refused.
    Column("request_hash", String(64), nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", Text),
    # [{product_id, sku, name, quantity, unit_price}] with prices as decimal strings.
    Column("lines", JSONB, nullable=False),
    Column("total", Numeric(18, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("shipping_address_id", String(ID_LENGTH), nullable=False),
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("customer_id", "idempotency_key", name="uq_orders_customer_idempotency"),
    CheckConstraint(STATUS_CHECK, name="ck_orders_status"),
    CheckConstraint("total >= 0", name="ck_orders_total"),
)
Index("ix_orders_customer", orders.c.customer_id, orders.c.created_at)
Index("ix_orders_created", orders.c.created_at)

# What placing an order needs of each product, fed by the catalog's events (ADR 0036). The
# catalog's events each carry part of a product (ProductUpdated the name, PriceChanged the
# price, ProductDiscontinued the status), so each part keeps the catalog version it was last
# set at: an older event, delivered late, leaves a part a newer one set alone.
product_replica = Table(
    "product_replica", metadata,
    Column("id", String(ID_LENGTH), primary_key=True),  # the catalog's id, canonical UUID
    Column("sku", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    Column("price", Numeric(18, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("details_version", BigInteger, nullable=False),
    Column("price_version", BigInteger, nullable=False),
    Column("status_version", BigInteger, nullable=False),
    # When the catalog made the newest change applied here (the event's occurred_at, or the
    # time of the catalog call that filled the row): how stale a price may be, for whoever looks.
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("price >= 0", name="ck_product_replica_price"),
)

# The customers' addresses as identity's events state them (ADR 0036), keyed by their owner:
# an order reads only its own customer's. Identity keeps no version per address, so the
# event's occurred_at orders them.
address_replica = Table(
    "address_replica", metadata,
    Column("customer_id", String(ID_LENGTH), primary_key=True),
    Column("address_id", String(ID_LENGTH), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("line1", String(200), nullable=False),
    Column("line2", String(200)),
    Column("city", String(100), nullable=False),
    Column("postal_code", String(20), nullable=False),
    Column("country", String(2), nullable=False),
    Column("phone", String(32)),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The payment methods an order of their owner's named, as payments answered (ADR 0041).
# Payments never changes or removes a method, so a row is never stale and has no version.
payment_method_replica = Table(
    "payment_method_replica", metadata,
    Column("customer_id", String(ID_LENGTH), primary_key=True),
    Column("method_id", String(ID_LENGTH), primary_key=True),
    Column("last4", String(4), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

saga_instances, saga_events = saga_tables(metadata)
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
