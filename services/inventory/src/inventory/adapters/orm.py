"""Inventory tables (SQLAlchemy Core). The CHECKs are the last line of defence: whatever a
handler gets wrong, stock can never go negative or promise more than is on hand."""

from __future__ import annotations

from chassis.messaging.tables import inbox_table, outbox_table
from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY

metadata = MetaData()

SKU_LENGTH = 64
ID_LENGTH = 200

stock = Table(
    "stock", metadata,
    Column("sku", String(SKU_LENGTH), primary_key=True),
    Column("on_hand", Integer, nullable=False, server_default="0"),
    Column("reserved", Integer, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("on_hand >= 0", name="ck_stock_on_hand_nonnegative"),
    CheckConstraint("reserved >= 0", name="ck_stock_reserved_nonnegative"),
    CheckConstraint("reserved <= on_hand", name="ck_stock_reserved_within_on_hand"),
)

reservations = Table(
    "reservations", metadata,
    Column("reservation_id", String(ID_LENGTH), primary_key=True),
    Column("order_id", String(ID_LENGTH)),
    Column("status", String(20), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("reason", Text),
    Column("short_skus", ARRAY(Text), nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("status IN ('reserved', 'committed', 'released', 'failed', 'restocked')",
                    name="ck_reservations_status"),
)
# The expiry sweep reads only live reservations, oldest deadline first.
Index("ix_reservations_live_expiry", reservations.c.expires_at,
      postgresql_where=text("status = 'reserved'"))

reservation_lines = Table(
    "reservation_lines", metadata,
    Column("reservation_id", String(ID_LENGTH),
           ForeignKey("reservations.reservation_id", ondelete="CASCADE"), nullable=False),
    # Text, not the stock key's type: a line may name a SKU this service has never heard of.
    Column("sku", Text, nullable=False),
    Column("quantity", Integer, nullable=False),
    PrimaryKeyConstraint("reservation_id", "sku"),
    CheckConstraint("quantity > 0", name="ck_reservation_lines_quantity_positive"),
)

# One row per adjustment id, applied or refused, so a repeat answers what the first got
# (the migration's stock transfers, ADR 0034).
stock_adjustments = Table(
    "stock_adjustments", metadata,
    Column("adjustment_id", String(ID_LENGTH), primary_key=True),
    Column("sku", String(SKU_LENGTH), nullable=False, index=True),
    Column("delta", Integer, nullable=False),
    Column("outcome", String(10), nullable=False),
    Column("on_hand", Integer, nullable=False),
    Column("reserved", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("outcome IN ('applied', 'refused')", name="ck_stock_adjustments_outcome"),
    CheckConstraint("delta <> 0", name="ck_stock_adjustments_delta_nonzero"),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
