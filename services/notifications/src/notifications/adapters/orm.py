"""Notifications tables (SQLAlchemy Core). UNIQUE(order_id, kind) is what makes a
notification exist once, however often its event is delivered or re-published."""

from __future__ import annotations

from chassis.messaging.tables import inbox_table
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)

metadata = MetaData()

ID_LENGTH = 200
EMAIL_LENGTH = 320
STATUS_CHECK = "status IN ('queued', 'sent', 'failed')"

notifications = Table(
    "notifications", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("order_id", String(ID_LENGTH), nullable=False),
    Column("kind", String(40), nullable=False),
    # NULL until known: shipment events carry no email; the sender looks it up in customers.
    Column("recipient", String(EMAIL_LENGTH)),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(10), nullable=False, server_default=text("'queued'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # Its place among the order's emails (domain.model.SEQUENCE): sent after earlier ones,
    # and not before the kind it follows (FOLLOWS) exists, for a while.
    Column("sequence", SmallInteger, nullable=False, server_default=text("0")),
    Column("follows", String(40)),
    # When the sender may (re)try it; a claim pushes it ahead as a lease.
    Column("next_attempt_at", DateTime(timezone=True), nullable=False,
           server_default=func.now()),
    # The sender instance holding it for an attempt (NULL when nobody does); see senders.
    Column("claimed_by", String(ID_LENGTH)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True)),
    Column("last_error", Text),
    UniqueConstraint("order_id", "kind", name="uq_notifications_order_kind"),
    CheckConstraint(STATUS_CHECK, name="ck_notifications_status"),
)
# The sender reads only queued rows, earliest due first.
Index("ix_notifications_due", notifications.c.next_attempt_at,
      postgresql_where=text("status = 'queued'"))
# ... and looks for an earlier queued email of the same order before it sends one.
Index("ix_notifications_queued_order", notifications.c.order_id, notifications.c.sequence,
      notifications.c.id, postgresql_where=text("status = 'queued'"))

# Every running sender's heartbeat: a claim is only as good as its holder's beat, so the
# emails of an instance that died are taken over within seconds, not after the lease.
senders = Table(
    "senders", metadata,
    Column("instance_id", String(ID_LENGTH), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("beat_at", DateTime(timezone=True), nullable=False),
)

# order -> customer email, learnt from the order events (shipment events carry no email).
customers = Table(
    "customers", metadata,
    Column("order_id", String(ID_LENGTH), primary_key=True),
    Column("customer_id", String(ID_LENGTH), nullable=False),
    Column("email", String(EMAIL_LENGTH), nullable=False),
    Column("learnt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

inbox = inbox_table(metadata)
