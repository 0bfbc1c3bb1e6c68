"""The saga tables, added to the orchestrating service's metadata and migrations.

``saga_instances`` holds one row per saga (its state, the data its steps read and write, the
trace it belongs to and when its current step times out); ``saga_events`` is the append-only
history an operator reads. ``resends`` counts re-sends of the current step's command.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

# The reconciler scans only live sagas; a partial index keeps that scan small when
# finished sagas pile up.
_RUNNING = "status = 'RUNNING'"


def saga_tables(metadata: MetaData) -> tuple[Table, Table]:
    instances = Table(
        "saga_instances", metadata,
        Column("id", Uuid, primary_key=True),
        Column("saga_name", String(120), nullable=False),
        Column("status", String(20), nullable=False),
        Column("current_step", Integer, nullable=False),
        Column("resends", Integer, nullable=False, server_default="0"),
        Column("data", JSONB, nullable=False),
        Column("trace_context", JSONB, nullable=False),
        Column("deadline_at", DateTime(timezone=True)),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("version", Integer, nullable=False, server_default="1"),
    )
    Index("ix_saga_instances_deadline", instances.c.deadline_at,
          postgresql_where=text(_RUNNING))
    events = Table(
        "saga_events", metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("saga_id", Uuid, nullable=False),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("kind", String(30), nullable=False),
        Column("step", String(120)),
        Column("message_type", String(120)),
        Column("detail", JSONB, nullable=False),
    )
    Index("ix_saga_events_saga", events.c.saga_id, events.c.id)
    return instances, events


def create_saga_tables(op: Any) -> None:
    """Alembic: ``create_saga_tables(op)`` inside the orchestrator's migration."""
    import sqlalchemy as sa

    op.create_table(
        "saga_instances",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("saga_name", sa.String(120), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("current_step", sa.Integer(), nullable=False),
        sa.Column("resends", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("data", JSONB(), nullable=False),
        sa.Column("trace_context", JSONB(), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
    )
    op.create_index("ix_saga_instances_deadline", "saga_instances", ["deadline_at"],
                    postgresql_where=sa.text(_RUNNING))
    op.create_table(
        "saga_events",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("saga_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("step", sa.String(120)),
        sa.Column("message_type", sa.String(120)),
        sa.Column("detail", JSONB(), nullable=False),
    )
    op.create_index("ix_saga_events_saga", "saga_events", ["saga_id", "id"])


__all__ = ["create_saga_tables", "saga_tables"]
