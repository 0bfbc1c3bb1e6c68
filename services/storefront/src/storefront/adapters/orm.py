"""The storefront's own tables: signed-in sessions (tokens kept server-side), sign-ins
under way (their PKCE verifier and state) and checkout
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

# A sign-in under way: the browser went to identity's page with a challenge; the verifier
# and the state stay here (keyed like a session, by the sha256 of the browser's cookie)
# until the browser comes back to /auth/callback once.
sign_ins = sa.Table(
    "sign_ins", metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(100), nullable=False),
    sa.Column("code_verifier", sa.String(128), nullable=False),
    sa.Column("redirect_uri", sa.String(500), nullable=False),
    sa.Column("next_url", sa.String(500), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_sign_ins_created_at", "created_at"),
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
