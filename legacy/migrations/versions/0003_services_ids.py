"""The services' ids on the monolith's people: each customer and address knows the UUID the
services know it by, and addresses are followed by the outbox too (issue 15: identity moves).

A row born here gets the id the migration's scheme gives it (``mercato.migration.ids``:
version 8, prefix ``6c656761``, table code, the integer), set by a trigger at insert, so the
monolith can map a services token's subject to its customer without asking anyone. A row
the sync writes for an account born in the services carries that account's own UUID.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Table codes of mercato.migration.ids.TABLES (a test checks both agree).
CODES = {"customers": 3, "addresses": 5}

FUNCTION = """
CREATE FUNCTION legacy_services_id(code integer, legacy bigint) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$
    SELECT ('6c656761-' || lpad(to_hex(code), 4, '0') || '-8000-8000-'
            || lpad(to_hex(legacy), 12, '0'))::uuid
$$
"""

DEFAULT = """
CREATE FUNCTION legacy_default_services_id() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.services_id IS NULL THEN
        NEW.services_id := legacy_services_id(TG_ARGV[0]::integer, NEW.id);
    END IF;
    RETURN NEW;
END;
$$
"""


def upgrade() -> None:
    op.execute(FUNCTION)
    op.execute(DEFAULT)
    for table, code in CODES.items():
        op.execute(f"ALTER TABLE {table} ADD COLUMN services_id uuid")
        # Table names and codes from CODES above, never from input.
        op.execute(f"UPDATE {table} SET services_id = legacy_services_id({code}, id)")  # noqa: S608
        op.execute(f"ALTER TABLE {table} ALTER COLUMN services_id SET NOT NULL")
        op.execute(f"CREATE UNIQUE INDEX {table}_services_id_key ON {table} (services_id)")
        # BEFORE: the value is in the row the outbox trigger (AFTER) records.
        op.execute(f"CREATE TRIGGER {table}_services_id BEFORE INSERT ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION legacy_default_services_id('{code}')")
    op.execute("CREATE TRIGGER addresses_outbox AFTER INSERT OR UPDATE OR DELETE ON addresses "
               "FOR EACH ROW EXECUTE FUNCTION legacy_outbox_capture('id')")


def downgrade() -> None:
    op.execute("DROP TRIGGER addresses_outbox ON addresses")
    for table in CODES:
        op.execute(f"DROP TRIGGER {table}_services_id ON {table}")
        op.execute(f"ALTER TABLE {table} DROP COLUMN services_id")
    op.execute("DROP FUNCTION legacy_default_services_id()")
    op.execute("DROP FUNCTION legacy_services_id(integer, bigint)")
