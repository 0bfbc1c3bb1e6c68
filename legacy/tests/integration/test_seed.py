"""``python -m legacy seed``: a year of trading, the same for the same seed, in one go."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from legacy.migrate import upgrade_to_head
from legacy.seed import SeedError, seed_shop
from legacy_kit import sql

pytestmark = pytest.mark.integration

FINGERPRINT = ("SELECT md5(string_agg(o.id || ':' || o.customer_id || ':' || o.total || ':' "
               "|| o.status || ':' || o.created_at, ',' ORDER BY o.id)) FROM orders o")


def seed(url: str, **kw: int) -> dict[str, int]:
    return asyncio.run(seed_shop(url, customers=kw.get("customers", 60),
                                 products=kw.get("products", 40), orders=kw.get("orders", 300),
                                 seed=kw.get("seed", 7), say=lambda _line: None))


def test_seed_is_deterministic_complete_and_quiet_in_the_outbox(
        database_url: str, pg_server) -> None:  # type: ignore[no-untyped-def]
    counts = seed(database_url)
    assert counts["customers"] == 60 and counts["orders"] == 300
    assert sql(database_url, "SELECT count(*) FROM legacy_outbox")[0][0] == 0
    span = sql(database_url, "SELECT max(created_at) - min(created_at) FROM orders")[0][0]
    assert span.days > 300
    # Totals agree with the lines; every paid order has its payment, shipment rows exist.
    assert sql(database_url, "SELECT count(*) FROM orders o WHERE total <> (SELECT "
                             "sum(quantity * unit_price) FROM order_lines l "
                             "WHERE l.order_id = o.id)")[0][0] == 0
    assert sql(database_url, "SELECT count(*) FROM payments")[0][0] == 300
    name = f"t_{uuid.uuid4().hex[:16]}"
    other = pg_server.create_database(name)
    try:
        upgrade_to_head(other)
        seed(other)
        assert sql(other, FINGERPRINT) == sql(database_url, FINGERPRINT)
    finally:
        pg_server.drop_database(name)
    # The shop goes on trading after a seed: new rows get new ids and reach the outbox.
    sql(database_url, "INSERT INTO categories (name) VALUES ('after-seed')")
    sql(database_url, "INSERT INTO customers (email, name, password_hash) "
                      "VALUES ('new@example.com', 'N', 'x')")
    assert sql(database_url, "SELECT count(*) FROM legacy_outbox")[0][0] == 1
    with pytest.raises(SeedError):
        seed(database_url)
