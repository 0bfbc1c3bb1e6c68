"""identity: account versions (If-Match of the sync's record endpoint) and the outbox
(identity publishes account and address events, ADR 0031)

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op
from chassis.messaging.tables import create_outbox

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("version", sa.Integer(), nullable=False,
                                     server_default=sa.text("1")))
    create_outbox(op)


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_column("users", "version")
