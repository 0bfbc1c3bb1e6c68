"""notifications: the notifications queue, order -> email mapping, inbox

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op
from chassis.messaging.tables import create_inbox

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("recipient", sa.String(320)),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False, server_default=sa.text("'queued'")),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text()),
        sa.UniqueConstraint("order_id", "kind", name="uq_notifications_order_kind"),
        sa.CheckConstraint("status IN ('queued', 'sent', 'failed')",
                           name="ck_notifications_status"),
    )
    op.create_index("ix_notifications_due", "notifications", ["next_attempt_at"],
                    postgresql_where=sa.text("status = 'queued'"))
    op.create_table(
        "customers",
        sa.Column("order_id", sa.String(200), primary_key=True),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("learnt_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
    )
    create_inbox(op)


def downgrade() -> None:
    op.drop_table("inbox")
    op.drop_table("customers")
    op.drop_table("notifications")
