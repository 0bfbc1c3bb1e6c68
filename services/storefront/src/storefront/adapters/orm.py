"""The storefront's own tables: signed-in sessions (tokens kept server-side) and checkout
attempts (one order per checkout form, whatever the clicks and reloads)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

sessions = sa.Table(
    "sessions", metadata,
    # sha256 of the cookie's value: a copy of this table signs no one in.
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.String(200), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("roles", sa.String(200), nullable=False),
    sa.Column("access_token", sa.Text(), nullable=False),
    sa.Column("refresh_token", sa.Text(), nullable=False),
    sa.Column("access_expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
              server_default=sa.func.now()),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False,
              server_default=sa.func.now()),
)

checkouts = sa.Table(
    "checkouts", metadata,
    sa.Column("checkout_key", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.String(200), nullable=False),
    sa.Column("address_id", sa.String(200), nullable=True),
    sa.Column("payment_method_id", sa.String(200), nullable=True),
    sa.Column("order_id", sa.String(200), nullable=True),
    sa.Column("product_ids", sa.Text(), nullable=False, server_default=""),
    sa.Column("cart_cleared", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
              server_default=sa.func.now()),
    sa.Index("ix_checkouts_order", "order_id"),
)
