"""``python -m legacy seed``: a shop that has been trading for a year.

Deterministic for a given ``--seed`` (one ``random.Random``; timestamps counted back from
a fixed day). Rows go in with COPY in one transaction, so a seed is all or nothing. The
outbox triggers are switched off inside that transaction (ALTER TABLE takes a lock that
keeps every other writer out until the commit, so no shop change goes unrecorded): the
seed is the starting state a later backfill carries over, not a stream of changes.

Every seeded customer's password is ``SEED_PASSWORD`` (one argon2 hash shared by all of
them: hashing thousands would take minutes and prove nothing).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
from argon2 import PasswordHasher

from legacy.domain import tracking_number

SEED_PASSWORD = "legacy-shop-2025"  # noqa: S105 - documented demo password of seeded data
EPOCH = datetime(2026, 12, 1, tzinfo=UTC)  # "today" for the seeded year

FAMILY = ["Kim", "Lee", "Park", "Choi", "Jung", "Kang", "Cho", "Yoon", "Jang", "Lim", "Han",
          "Oh", "Seo", "Shin", "Kwon", "Hwang", "Ahn", "Song", "Yoo", "Hong"]
GIVEN = ["Minjun", "Seoyeon", "Jiho", "Haeun", "Dohyun", "Jiwoo", "Eunwoo", "Sua", "Yejun",
         "Jiyu", "Siwoo", "Hayoon", "Juwon", "Seoa", "Hajun", "Chaewon", "Jihoon", "Yuna"]
CITIES = [("Seoul", "04"), ("Busan", "48"), ("Incheon", "21"), ("Daegu", "41"),
          ("Daejeon", "34"), ("Gwangju", "61"), ("Suwon", "16"), ("Ulsan", "44")]
DEPARTMENTS = {"Kitchen": ["Cookware", "Knives", "Tableware"],
               "Home": ["Bedding", "Lighting", "Storage"],
               "Outdoor": ["Camping", "Garden", "Cycling"],
               "Electronics": ["Audio", "Cables", "Phone accessories"],
               "Stationery": ["Notebooks", "Pens", "Desk"]}
ADJECTIVES = ["Classic", "Compact", "Everyday", "Premium", "Travel", "Eco", "Pro", "Mini",
              "Large", "Soft", "Steel", "Bamboo", "Wireless", "Folding"]
NOUNS = {"Cookware": ["Pan", "Pot", "Wok", "Steamer"], "Knives": ["Chef knife", "Paring knife"],
         "Tableware": ["Bowl set", "Plate", "Cup"], "Bedding": ["Pillow", "Duvet", "Blanket"],
         "Lighting": ["Desk lamp", "Bulb pack", "Lantern"], "Storage": ["Box", "Shelf", "Basket"],
         "Camping": ["Tent", "Chair", "Stove"], "Garden": ["Hose", "Planter", "Shears"],
         "Cycling": ["Helmet", "Light set", "Lock"], "Audio": ["Earbuds", "Speaker"],
         "Cables": ["USB-C cable", "HDMI cable"], "Phone accessories": ["Case", "Charger"],
         "Notebooks": ["Notebook", "Planner"], "Pens": ["Pen set", "Fountain pen"],
         "Desk": ["Organizer", "Mat", "Stand"]}


class SeedError(Exception):
    pass


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


# The tables the legacy outbox follows (migrations 0002, 0003): a seed is the starting state,
# which the backfill copies, not a stream of changes.
OUTBOX_TABLES = ("products", "stock", "customers", "addresses", "orders")


async def seed_shop(database_url: str, *, customers: int, products: int, orders: int,
                    seed: int, say: Callable[[str], None]) -> dict[str, int]:
    rng = random.Random(seed)  # noqa: S311 - test data, reproducible on purpose
    t0 = time.monotonic()
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        if await conn.fetchval("SELECT count(*) FROM customers") or \
                await conn.fetchval("SELECT count(*) FROM products"):
            raise SeedError("the shop already has customers or products: seed a new database")
        if orders and not (customers and products):
            raise SeedError("orders need customers and products")
        async with conn.transaction():
            for table in OUTBOX_TABLES:
                await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_outbox")
            counts = await _fill(conn, rng, customers, products, orders, say, t0)
            for table in OUTBOX_TABLES:
                await conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER {table}_outbox")
            for table in ("customers", "addresses", "categories", "products", "orders",
                          "payments", "shipments"):
                # Table names from the list above, never from input.
                query = (f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                         f"greatest((SELECT max(id) FROM {table}), 1))")
                await conn.execute(query)
    finally:
        await conn.close()
    say(f"seeded {', '.join(f'{v} {k}' for k, v in counts.items())} "
        f"in {time.monotonic() - t0:.1f} s")
    return counts


async def _copy(conn: asyncpg.Connection, table: str, columns: list[str],
                rows: Sequence[tuple[object, ...]]) -> None:
    if rows:
        await conn.copy_records_to_table(table, columns=columns, records=rows)


async def _fill(conn: asyncpg.Connection, rng: random.Random, n_customers: int,
                n_products: int, n_orders: int, say: Callable[[str], None],
                t0: float) -> dict[str, int]:
    def progress(what: str) -> None:
        say(f"  {time.monotonic() - t0:5.1f} s  {what}")

    # Categories: departments and their sub-categories.
    cat_rows: list[tuple[int, str, int | None]] = []
    leaf_ids: list[tuple[int, str]] = []
    cid = 0
    for dept, subs in DEPARTMENTS.items():
        cid += 1
        parent = cid
        cat_rows.append((cid, dept, None))
        for sub in subs:
            cid += 1
            cat_rows.append((cid, sub, parent))
            leaf_ids.append((cid, sub))
    await _copy(conn, "categories", ["id", "name", "parent_id"], cat_rows)

    created = lambda days: EPOCH - timedelta(days=days, seconds=rng.randrange(86400))  # noqa: E731
    prices: list[Decimal] = []
    product_rows, stock_rows = [], []
    for i in range(1, n_products + 1):
        cat, sub = rng.choice(leaf_ids)
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS[sub])}"
        price = Decimal(rng.randrange(10, 3000) * 100)
        prices.append(price)
        product_rows.append((i, f"LG-{i:06d}", f"{name} #{i}", f"{name} from our {sub} range",
                             cat, price, "KRW", rng.random() > 0.03, created(400)))
        stock_rows.append((i, rng.randrange(0, 500)))
    await _copy(conn, "products", ["id", "sku", "name", "description", "category_id", "price",
                                   "currency", "active", "created_at"], product_rows)
    await _copy(conn, "stock", ["product_id", "on_hand"], stock_rows)
    progress(f"{len(cat_rows)} categories, {n_products} products with stock")

    hashed = PasswordHasher().hash(SEED_PASSWORD)  # the shop's default cost
    customer_rows, address_rows, addresses_of = [], [], {}
    aid = 0
    for i in range(1, n_customers + 1):
        family, given = rng.choice(FAMILY), rng.choice(GIVEN)
        customer_rows.append((i, f"{given.lower()}.{family.lower()}.{i}@example.com",
                              f"{family} {given}", hashed, False, created(365)))
        mine = []
        for _ in range(1 if rng.random() < 0.7 else 2):
            aid += 1
            city, prefix = rng.choice(CITIES)
            address_rows.append((aid, i, f"{family} {given}",
                                 f"{rng.randrange(1, 300)} {rng.choice(FAMILY)}-ro", city,
                                 f"{prefix}{rng.randrange(100, 999)}", "KR"))
            mine.append(aid)
        addresses_of[i] = mine
    await _copy(conn, "customers", ["id", "email", "name", "password_hash", "is_admin",
                                    "created_at"], customer_rows)
    await _copy(conn, "addresses", ["id", "customer_id", "recipient", "line1", "city",
                                    "postal_code", "country"], address_rows)
    progress(f"{n_customers} customers, {aid} addresses")

    batch = 5000
    for start in range(1, n_orders + 1, batch):
        order_rows, line_rows, pay_rows, ship_rows = [], [], [], []
        for oid in range(start, min(n_orders, start + batch - 1) + 1):
            customer = rng.randrange(1, n_customers + 1)
            address = rng.choice(addresses_of[customer])
            days = rng.randrange(0, 365)
            at = created(days)
            status = ("DELIVERED" if days > 7 else "SHIPPED" if days > 1 else "PAID")
            if rng.random() < 0.02:
                status = "CANCELLED"
            chosen = rng.sample(range(1, n_products + 1), k=min(n_products, rng.randint(1, 4)))
            total = Decimal(0)
            for p in chosen:
                q = rng.randint(1, 3)
                line_rows.append((oid, p, q, prices[p - 1]))
                total += prices[p - 1] * q
            order_rows.append((oid, customer, address, status, total, "KRW", at, at))
            pay_rows.append((oid, oid, f"seed-charge-{oid}",
                             "REFUNDED" if status == "CANCELLED" else "CAPTURED", total, "KRW",
                             rng.choice(["4242", "5454", "1881", "0005"]), at))
            if status != "CANCELLED":
                ship_rows.append((oid, oid, address,
                                  {"PAID": "READY"}.get(status, status), tracking_number(oid),
                                  at))
        await _copy(conn, "orders", ["id", "customer_id", "address_id", "status", "total",
                                     "currency", "created_at", "updated_at"], order_rows)
        await _copy(conn, "order_lines", ["order_id", "product_id", "quantity", "unit_price"],
                    line_rows)
        await _copy(conn, "payments", ["id", "order_id", "provider_charge_id", "status",
                                       "amount", "currency", "card_last4", "created_at"],
                    pay_rows)
        await _copy(conn, "shipments", ["id", "order_id", "address_id", "status",
                                        "tracking_number", "created_at"], ship_rows)
        progress(f"orders {min(n_orders, start + batch - 1)}/{n_orders}")
    return {"categories": len(cat_rows), "products": n_products, "customers": n_customers,
            "addresses": aid, "orders": n_orders}
