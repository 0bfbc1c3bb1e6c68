"""The shop's schema: one database, tables that join each other.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE customers (
    id            bigserial PRIMARY KEY,
    email         text NOT NULL,
    name          text NOT NULL,
    password_hash text NOT NULL,
    is_admin      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX customers_email_key ON customers (lower(email));

CREATE TABLE sessions (
    token_hash  text PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_customer_idx ON sessions (customer_id);

CREATE TABLE addresses (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    recipient   text NOT NULL,
    line1       text NOT NULL,
    city        text NOT NULL,
    postal_code text NOT NULL,
    country     char(2) NOT NULL DEFAULT 'KR',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX addresses_customer_idx ON addresses (customer_id);

CREATE TABLE categories (
    id        bigserial PRIMARY KEY,
    name      text NOT NULL UNIQUE,
    parent_id bigint REFERENCES categories (id)
);

CREATE TABLE products (
    id          bigserial PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    category_id bigint NOT NULL REFERENCES categories (id),
    price       numeric(12, 2) NOT NULL CHECK (price > 0),
    currency    char(3) NOT NULL DEFAULT 'KRW',
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX products_category_idx ON products (category_id);

-- One row per product: checkout locks these rows (SELECT ... FOR UPDATE, in product id
-- order so two checkouts never wait on each other in a cycle).
CREATE TABLE stock (
    product_id bigint PRIMARY KEY REFERENCES products (id) ON DELETE CASCADE,
    on_hand    integer NOT NULL CHECK (on_hand >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE carts (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL UNIQUE REFERENCES customers (id) ON DELETE CASCADE,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cart_lines (
    cart_id    bigint NOT NULL REFERENCES carts (id) ON DELETE CASCADE,
    product_id bigint NOT NULL REFERENCES products (id),
    quantity   integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (cart_id, product_id)
);

CREATE TABLE orders (
    id              bigserial PRIMARY KEY,
    customer_id     bigint NOT NULL REFERENCES customers (id),
    address_id      bigint NOT NULL REFERENCES addresses (id),
    status          text NOT NULL CHECK (status IN ('PAID', 'SHIPPED', 'DELIVERED', 'CANCELLED')),
    total           numeric(12, 2) NOT NULL CHECK (total >= 0),
    currency        char(3) NOT NULL DEFAULT 'KRW',
    idempotency_key text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (customer_id, idempotency_key)
);
CREATE INDEX orders_customer_idx ON orders (customer_id, created_at DESC);

CREATE TABLE order_lines (
    order_id   bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id bigint NOT NULL REFERENCES products (id),
    quantity   integer NOT NULL CHECK (quantity > 0),
    unit_price numeric(12, 2) NOT NULL CHECK (unit_price >= 0),
    PRIMARY KEY (order_id, product_id)
);

CREATE TABLE payments (
    id                 bigserial PRIMARY KEY,
    order_id           bigint NOT NULL UNIQUE REFERENCES orders (id),
    provider_charge_id text NOT NULL UNIQUE,
    status             text NOT NULL CHECK (status IN ('AUTHORIZED', 'CAPTURED', 'REFUNDED')),
    amount             numeric(12, 2) NOT NULL,
    currency           char(3) NOT NULL,
    card_last4         char(4) NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE shipments (
    id              bigserial PRIMARY KEY,
    order_id        bigint NOT NULL UNIQUE REFERENCES orders (id),
    address_id      bigint NOT NULL REFERENCES addresses (id),
    status          text NOT NULL CHECK (status IN ('READY', 'SHIPPED', 'DELIVERED')),
    tracking_number text NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
"""

DROP = """
DROP TABLE shipments, payments, order_lines, orders, cart_lines, carts, stock, products,
    categories, addresses, sessions, customers;
"""


def statements(script: str) -> list[str]:
    # One statement per call: asyncpg prepares each, and a prepared statement holds one.
    return [s for s in script.split(";\n") if s.strip()]


def upgrade() -> None:
    for statement in statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute(DROP)
