"""The stock split (ADR 0034): while checkout is split between the monolith and the
services, every product's units are owned by one side or the other, and units move between
them only by transfers. These tables belong to the migration, not to the shop (the shop's
code never reads them), and live here because a transfer's debit of ``stock`` must commit
in one transaction with its record.

- ``legacy_stock_split``: the products in the split and the units each side had when the
  product joined it (the base of the conservation check).
- ``legacy_stock_transfers``: the durable transfer log. ``to_services``: the debit of
  ``stock`` and the row (``debited``) commit together, the credit on the inventory (keyed
  by the transfer id, idempotent) follows, then ``done``; a refused credit is undone here
  (``reverted``). ``to_legacy``: the row (``pending``) first, then the inventory's debit
  (keyed by the id), then the credit of ``stock`` with ``done`` in one transaction, or
  ``failed`` when the inventory refused it (nothing moved).
- ``legacy_stock_moves``: every change of a split product's ``stock.on_hand``, written by a
  trigger and classified: ``transfer`` (written by the migration, origin
  ``mercato-stock``), ``sale`` (a decrease in a transaction that wrote an order line for
  the product: the checkout) or ``receipt`` (anything else: the back office's
  ``PUT /shop/admin/stock``, a count, a write-off). The shop's code is unchanged.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = """
CREATE TABLE legacy_stock_split (
    product_id       bigint PRIMARY KEY REFERENCES products (id),
    sku              text NOT NULL,
    started_legacy   integer NOT NULL CHECK (started_legacy >= 0),
    started_services integer NOT NULL CHECK (started_services >= 0),
    started_at       timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE legacy_stock_transfers (
    id         uuid PRIMARY KEY,
    product_id bigint NOT NULL REFERENCES legacy_stock_split (product_id),
    sku        text NOT NULL,
    direction  text NOT NULL CHECK (direction IN ('to_services', 'to_legacy')),
    quantity   integer NOT NULL CHECK (quantity > 0),
    state      text NOT NULL CHECK (state IN ('debited', 'pending', 'done', 'failed',
                                              'reverted')),
    error      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX legacy_stock_transfers_open_idx ON legacy_stock_transfers (created_at)
    WHERE state IN ('debited', 'pending');
CREATE INDEX legacy_stock_transfers_product_idx ON legacy_stock_transfers (product_id);
CREATE TABLE legacy_stock_moves (
    id         bigserial PRIMARY KEY,
    product_id bigint NOT NULL,
    delta      integer NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('transfer', 'sale', 'receipt')),
    origin     text NOT NULL,
    txid       bigint NOT NULL DEFAULT txid_current(),
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX legacy_stock_moves_product_idx ON legacy_stock_moves (product_id);
"""

# The checkout writes its order lines before it takes the stock: each line leaves its
# product in a transaction-local setting, which the stock trigger reads.
MARK_SOLD = """
CREATE FUNCTION legacy_stock_mark_sold() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Products outside the split cost one key lookup (the seed's bulk load, a whole year).
    IF NOT EXISTS (SELECT 1 FROM legacy_stock_split s WHERE s.product_id = NEW.product_id) THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('legacy.sold',
                       coalesce(current_setting('legacy.sold', true), '') || ','
                       || NEW.product_id || ',', true);
    RETURN NULL;
END;
$$
"""

RECORD_MOVE = """
CREATE FUNCTION legacy_stock_record_move() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    delta integer;
    origin text := coalesce(current_setting('legacy.origin', true), '');
    kind text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        delta := NEW.on_hand;
    ELSE
        delta := NEW.on_hand - OLD.on_hand;
    END IF;
    IF delta = 0 OR NOT EXISTS (SELECT 1 FROM legacy_stock_split s
                                WHERE s.product_id = NEW.product_id) THEN
        RETURN NULL;
    END IF;
    IF origin = 'mercato-stock' THEN
        kind := 'transfer';
    ELSIF delta < 0 AND position(',' || NEW.product_id || ','
                                 IN coalesce(current_setting('legacy.sold', true), '')) > 0 THEN
        kind := 'sale';
    ELSE
        kind := 'receipt';
    END IF;
    INSERT INTO legacy_stock_moves (product_id, delta, kind, origin)
    VALUES (NEW.product_id, delta, kind, origin);
    RETURN NULL;
END;
$$
"""


def upgrade() -> None:
    for statement in TABLES.split(";\n"):
        if statement.strip():
            op.execute(statement)
    op.execute(MARK_SOLD)
    op.execute(RECORD_MOVE)
    op.execute("CREATE TRIGGER order_lines_stock_sold AFTER INSERT ON order_lines "
               "FOR EACH ROW EXECUTE FUNCTION legacy_stock_mark_sold()")
    op.execute("CREATE TRIGGER stock_moves AFTER INSERT OR UPDATE OF on_hand ON stock "
               "FOR EACH ROW EXECUTE FUNCTION legacy_stock_record_move()")


def downgrade() -> None:
    op.execute("DROP TRIGGER stock_moves ON stock")
    op.execute("DROP TRIGGER order_lines_stock_sold ON order_lines")
    op.execute("DROP FUNCTION legacy_stock_record_move()")
    op.execute("DROP FUNCTION legacy_stock_mark_sold()")
    op.execute("DROP TABLE legacy_stock_moves, legacy_stock_transfers, legacy_stock_split")
