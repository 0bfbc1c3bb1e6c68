"""The order view table (SQLAlchemy Core) and this service's inbox. order_history publishes
nothing, so it has no outbox. The CHECKs hold every status to the values the merge rules
rank, whatever a handler gets wrong."""

from __future__ import annotations

from chassis.messaging.tables import inbox_table
from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Index,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

ID_LENGTH = 200
STATUS_LENGTH = 20
TRACKING_LENGTH = 64

ORDER_STATUS_CHECK = "status IN ('PENDING', 'APPROVED', 'REJECTED', 'CANCELLED')"
PAYMENT_STATUS_CHECK = ("payment_status IN ('AUTHORIZED', 'CAPTURED', 'REFUNDED', 'VOIDED', "
                        "'DECLINED')")
SHIPMENT_STATUS_CHECK = ("shipment_status IN ('CREATED', 'DISPATCHED', 'IN_TRANSIT', "
                         "'DELIVERED', 'FAILED', 'CANCELLED')")

order_view = Table(
    "order_view", metadata,
    Column("order_id", String(ID_LENGTH), primary_key=True),
    # NULL until an event that names the customer arrives (payments' events do not).
    Column("customer_id", String(ID_LENGTH)),
    Column("status", String(STATUS_LENGTH)),
    # Numeric without a scale keeps the decimal string's own ("12.50" stays 12.50).
    Column("total", Numeric),
    Column("currency", String(3)),
    Column("lines", JSONB),
    Column("reason", Text),
    Column("payment_status", String(STATUS_LENGTH)),
    Column("amount_captured", Numeric),
    Column("amount_refunded", Numeric),
    Column("shipment_status", String(STATUS_LENGTH)),
    Column("tracking_number", String(TRACKING_LENGTH)),
    Column("placed_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_event_at", DateTime(timezone=True), nullable=False),
    CheckConstraint(ORDER_STATUS_CHECK, name="ck_order_view_status"),
    CheckConstraint(PAYMENT_STATUS_CHECK, name="ck_order_view_payment_status"),
    CheckConstraint(SHIPMENT_STATUS_CHECK, name="ck_order_view_shipment_status"),
)
# A customer's orders, newest first.
Index("ix_order_view_customer", order_view.c.customer_id, order_view.c.placed_at)

inbox = inbox_table(metadata)
