"""The outbox and inbox tables, added to a service's own metadata and migrations.

Each producer has an outbox in its own database and each consumer an inbox in its own: the
state change and the message (or the record of having handled one) commit together.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

OUTBOX_CHANNEL = "mercato_outbox"


def outbox_table(metadata: MetaData) -> Table:
    table = Table(
        "outbox", metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("message_id", Uuid, nullable=False, unique=True),
        Column("subject", String(255), nullable=False),
        Column("message_type", String(120), nullable=False),
        Column("headers", JSONB, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
    )
    Index("ix_outbox_unpublished", table.c.id, postgresql_where=text("published_at IS NULL"))
    Index("ix_outbox_published_at", table.c.published_at)
    return table


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox", metadata,
        Column("consumer", String(120), nullable=False),
        Column("message_id", Uuid, nullable=False),
        Column("message_type", String(120), nullable=False),
        Column("handled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "message_id"),
    )


def create_outbox(op: Any) -> None:
    """Alembic: ``create_outbox(op)`` inside a service's migration."""
    import sqlalchemy as sa

    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("message_type", sa.String(120), nullable=False),
        sa.Column("headers", JSONB(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("published_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["id"],
                    postgresql_where=sa.text("published_at IS NULL"))
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"])


def create_inbox(op: Any) -> None:
    """Alembic: ``create_inbox(op)`` inside a service's migration."""
    import sqlalchemy as sa

    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(120), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("message_type", sa.String(120), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("consumer", "message_id"),
    )


__all__ = ["OUTBOX_CHANNEL", "create_inbox", "create_outbox", "inbox_table",
           "outbox_table"]
