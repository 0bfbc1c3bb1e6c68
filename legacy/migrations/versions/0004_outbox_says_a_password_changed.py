"""The legacy outbox says that a customer's password changed, never the hash: an UPDATE of
``password_hash`` alone used to record nothing (the column is left out, and an UPDATE
changing nothing else is not recorded), so a password changed in the monolith did not reach
identity until the account's next change (ADR 0031). Now such a row records
``{"password_hash_changed": true}``, and the sync reads the hash from the row itself.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_spec = importlib.util.spec_from_file_location(
    "legacy_outbox_0002", Path(__file__).with_name("0002_outbox.py"))
assert _spec is not None and _spec.loader is not None
_0002 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_0002)

BEFORE = _0002.FUNCTION
SAID = """           AND n.key <> 'updated_at';
        IF to_jsonb(OLD) -> 'password_hash' IS DISTINCT FROM to_jsonb(NEW) -> 'password_hash'
        THEN
            diff := diff || '{"password_hash_changed": true}'::jsonb;
        END IF;
"""
AFTER = BEFORE.replace("           AND n.key <> 'updated_at';\n", SAID).replace(
    "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
assert AFTER.count("password_hash_changed") == 1


def upgrade() -> None:
    op.execute(AFTER)


def downgrade() -> None:
    op.execute(BEFORE.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
