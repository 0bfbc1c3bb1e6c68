"""notifications: claims tied to the sender's liveness, emails sent in order per order

A claim names its sender (claimed_by), every sender beats in senders, and each email knows
its place among its order's emails (sequence, and the kind it follows), so a crashed
sender's emails are taken over within seconds and not overtaken by a later email of the
same order. Rows queued before keep follows NULL: they wait for nothing that is not queued.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# A frozen copy of domain.model.SEQUENCE at this revision: a migration must keep doing what
# it did when the model changes later.
SEQUENCE = {"order_placed": 0, "order_approved": 1, "order_rejected": 1,
            "order_cancelled": 2, "shipment_dispatched": 2, "shipment_delivered": 3}


def upgrade() -> None:
    op.add_column("notifications", sa.Column("sequence", sa.SmallInteger(), nullable=False,
                                             server_default=sa.text("0")))
    op.add_column("notifications", sa.Column("follows", sa.String(40)))
    op.add_column("notifications", sa.Column("claimed_by", sa.String(200)))
    cases = " ".join(f"WHEN '{kind}' THEN {place}" for kind, place in SEQUENCE.items())
    op.execute(f"UPDATE notifications SET sequence = CASE kind {cases} ELSE 0 END")  # noqa: S608
    op.create_index("ix_notifications_queued_order", "notifications",
                    ["order_id", "sequence", "id"], postgresql_where=sa.text("status = 'queued'"))
    op.create_table(
        "senders",
        sa.Column("instance_id", sa.String(200), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("senders")
    op.drop_index("ix_notifications_queued_order", table_name="notifications")
    op.drop_column("notifications", "claimed_by")
    op.drop_column("notifications", "follows")
    op.drop_column("notifications", "sequence")
