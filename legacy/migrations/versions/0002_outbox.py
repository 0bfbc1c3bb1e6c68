"""The legacy outbox: triggers record every committed change of the tables the migration
must follow (products, stock, customers, orders) in ``legacy_outbox``, in the writing
transaction itself (ADR 0026).

A row: ``id`` (bigserial: increasing in allocation order, not commit order; a reader must
not assume a gap is final until the transactions before it are over, which ``txid`` lets it
check), ``table_name``, ``op`` (INSERT, UPDATE, DELETE), ``row_id`` (the row's key as text),
``changed`` (INSERT: the new row; UPDATE: only the columns whose value changed, with their
new values; DELETE: the old row), ``txid`` (the writing transaction), ``origin`` (the
session setting ``legacy.origin``, empty for the shop itself: a later sync writer sets it so
its own writes are not sent back) and ``created_at``. An UPDATE that changes no value writes
nothing. Secrets (``password_hash``) never enter the outbox.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TRACKED = {"products": "id", "stock": "product_id", "customers": "id", "orders": "id"}

TABLE = """
CREATE TABLE legacy_outbox (
    id         bigserial PRIMARY KEY,
    table_name text NOT NULL,
    op         text NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE')),
    row_id     text NOT NULL,
    changed    jsonb NOT NULL,
    txid       bigint NOT NULL DEFAULT txid_current(),
    origin     text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX legacy_outbox_table_row_idx ON legacy_outbox (table_name, row_id);
"""

FUNCTION = """
CREATE FUNCTION legacy_outbox_capture() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    key_column text := TG_ARGV[0];
    new_row jsonb;
    old_row jsonb;
    diff jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        new_row := to_jsonb(NEW) - 'password_hash';
        diff := new_row;
    ELSIF TG_OP = 'UPDATE' THEN
        new_row := to_jsonb(NEW) - 'password_hash';
        old_row := to_jsonb(OLD) - 'password_hash';
        SELECT coalesce(jsonb_object_agg(n.key, n.value), '{}'::jsonb) INTO diff
          FROM jsonb_each(new_row) AS n
         WHERE old_row -> n.key IS DISTINCT FROM n.value
           AND n.key <> 'updated_at';
        IF diff = '{}'::jsonb THEN
            RETURN NULL;  -- nothing a follower needs to know
        END IF;
    ELSE
        old_row := to_jsonb(OLD) - 'password_hash';
        diff := old_row;
    END IF;
    INSERT INTO legacy_outbox (table_name, op, row_id, changed, origin)
    VALUES (TG_TABLE_NAME, TG_OP,
            coalesce(new_row, old_row) ->> key_column,
            diff,
            coalesce(current_setting('legacy.origin', true), ''));
    RETURN NULL;
END;
$$;
"""


def upgrade() -> None:
    for statement in TABLE.split(";\n"):
        if statement.strip():
            op.execute(statement)
    op.execute(FUNCTION)
    for table, key in TRACKED.items():
        op.execute(f"CREATE TRIGGER {table}_outbox AFTER INSERT OR UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION legacy_outbox_capture('{key}')")


def downgrade() -> None:
    for table in TRACKED:
        op.execute(f"DROP TRIGGER {table}_outbox ON {table}")
    op.execute("DROP FUNCTION legacy_outbox_capture()")
    op.execute("DROP TABLE legacy_outbox")
