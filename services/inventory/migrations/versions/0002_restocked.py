"""inventory: a committed reservation can be restocked (its order cancelled before dispatch)

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_OLD = "status IN ('reserved', 'committed', 'released', 'failed')"
_NEW = "status IN ('reserved', 'committed', 'released', 'failed', 'restocked')"


def upgrade() -> None:
    op.drop_constraint("ck_reservations_status", "reservations", type_="check")
    op.create_check_constraint("ck_reservations_status", "reservations", _NEW)


def downgrade() -> None:
    op.drop_constraint("ck_reservations_status", "reservations", type_="check")
    op.create_check_constraint("ck_reservations_status", "reservations", _OLD)
