"""catalog: transactional outbox

Revision ID: 0002
Revises: 0001
"""
from alembic import op
from chassis.messaging.tables import create_outbox

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_outbox(op)


def downgrade() -> None:
    op.drop_table("outbox")
