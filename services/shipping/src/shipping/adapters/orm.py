"""Shipping tables (SQLAlchemy Core). The CHECKs and keys are the last line of defence: a
status outside the lifecycle, a tracking number used twice or a status reached twice by the
same shipment cannot be stored, whatever a handler gets wrong."""

from __future__ import annotations

from chassis.messaging.tables import inbox_table, outbox_table
from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

ID_LENGTH = 200
STATUS_LENGTH = 20
TRACKING_LENGTH = 32
_STATUS_CHECK = "status IN ('CREATED', 'DISPATCHED', 'IN_TRANSIT', 'DELIVERED', 'CANCELLED')"

shipments = Table(
    "shipments", metadata,
    Column("shipment_id", String(ID_LENGTH), primary_key=True),
    Column("order_id", String(ID_LENGTH), nullable=False),
    # NULL only on a tombstone (a cancel that came before its create).
    Column("customer_id", String(ID_LENGTH)),
    Column("status", String(STATUS_LENGTH), nullable=False),
    Column("tracking_number", String(TRACKING_LENGTH)),
    Column("address", JSONB),
    Column("lines", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    # When the carrier moves it next; NULL once nothing more will happen.
    Column("next_move_at", DateTime(timezone=True)),
    Column("reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("tracking_number", name="uq_shipments_tracking_number"),
    CheckConstraint(_STATUS_CHECK, name="ck_shipments_status"),
)
Index("ix_shipments_order_id", shipments.c.order_id)
Index("ix_shipments_customer_id", shipments.c.customer_id, shipments.c.created_at)
# The carrier reads only shipments with a move ahead, earliest first.
Index("ix_shipments_next_move", shipments.c.next_move_at,
      postgresql_where=text("next_move_at IS NOT NULL"))

shipment_history = Table(
    "shipment_history", metadata,
    Column("shipment_id", String(ID_LENGTH),
           ForeignKey("shipments.shipment_id", ondelete="CASCADE"), nullable=False),
    Column("status", String(STATUS_LENGTH), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    # Each status is reached at most once: a carrier step taken twice cannot be recorded.
    PrimaryKeyConstraint("shipment_id", "status"),
    CheckConstraint(_STATUS_CHECK, name="ck_shipment_history_status"),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
