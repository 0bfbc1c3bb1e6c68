"""Orders' replica of the customers' payment methods (ADR 0041): filled by payments' answer
the first time an order of the owner names a method, read by later orders of that owner only;
payments (a real aiohttp stand-in on 127.0.0.1 that counts its calls) is asked only for what
the replica lacks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from chassis.db import Database
from chassis.testing import assert_problem
from fastapi.testclient import TestClient
from orders_kit import ADDRESS, MINTER, MUG, FakeUpstreams
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

pytestmark = pytest.mark.integration

ALICE = MINTER.auth(["customer"], subject="alice")
BOB = MINTER.auth(["customer"], subject="bob")
ADMIN = MINTER.auth(["customer", "admin"], subject="admin-1")


@pytest.fixture
def upstreams() -> Iterator[FakeUpstreams]:
    home = dict(ADDRESS)
    fake = FakeUpstreams(addresses={(who, "addr-1"): home
                                    for who in ("alice", "bob", "admin-1")}).start()
    fake.add_method("pm_alice", "alice", "1111")
    fake.add_method("pm_bob", "bob", "2222")
    yield fake
    fake.stop()



def order(client: TestClient, method_id: str, key: str, who: dict[str, str] = ALICE) -> Any:
    return client.post("/api/orders", headers={**who, "Idempotency-Key": key}, json={
        "items": [{"product_id": MUG, "quantity": 1}], "shipping_address_id": "addr-1",
        "payment": {"payment_method_id": method_id}})


def query(database_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    async def main() -> list[tuple[Any, ...]]:
        db = Database(database_url, pool_size=1)
        try:
            async with db.engine.connect() as conn:
                return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]
        finally:
            await db.dispose()

    return asyncio.run(main())


def kept(database_url: str) -> list[tuple[Any, ...]]:
    return query(database_url, "SELECT customer_id, method_id, last4 "
                               "FROM payment_method_replica ORDER BY 1, 2")


def charged_with(database_url: str, order_id: str) -> tuple[str, str]:
    """The payment method and card digits the order's saga will authorize with."""
    ((data,),) = query(database_url, "SELECT data FROM saga_instances WHERE id = "
                                     "CAST(:id AS uuid)", id=order_id)
    doc = orjson.loads(data) if isinstance(data, (str, bytes)) else data
    return doc["payment_method_id"], doc["card_last4"]


def test_a_method_named_once_is_not_asked_of_payments_again(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    first = order(client, "pm_alice", "k-1")
    assert first.status_code == 202, first.text
    assert upstreams.hits["payments"] == 1
    assert kept(database_url) == [("alice", "pm_alice", "1111")]
    second = order(client, "pm_alice", "k-2")
    assert second.status_code == 202, second.text
    assert upstreams.hits["payments"] == 1
    assert charged_with(database_url, second.json()["id"]) == ("pm_alice", "1111")


def test_a_kept_method_places_orders_while_payments_cannot_be_reached(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    assert order(client, "pm_alice", "k-1").status_code == 202
    upstreams.down.add("payments")
    assert order(client, "pm_alice", "k-2").status_code == 202
    # a method not kept still needs payments: the order waits for it, nothing is written
    assert_problem(order(client, "pm_bob", "k-3", who=BOB), 503)
    assert query(database_url, "SELECT count(*) FROM orders") == [(2,)]


def test_another_customers_kept_method_is_not_used(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    assert order(client, "pm_bob", "k-b", who=BOB).status_code == 202
    doc = assert_problem(order(client, "pm_bob", "k-a"), 422)
    assert doc["reason"] == "unknown_payment_method"
    assert upstreams.hits["payments"] == 2  # asked, for alice: payments does not know it as hers
    assert kept(database_url) == [("bob", "pm_bob", "2222")]


def test_an_unknown_method_is_not_kept(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    assert_problem(order(client, "pm_nope", "k-1"), 422)
    assert_problem(order(client, "pm_nope", "k-2"), 422)
    assert upstreams.hits["payments"] == 2
    assert kept(database_url) == []


def test_what_payments_answers_an_admin_about_someone_elses_method_is_not_kept(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    # payments lets an admin read anyone's method (and declines the charge at authorization:
    # the order's customer is not its owner); the answer does not make the method the admin's
    assert order(client, "pm_bob", "k-1", who=ADMIN).status_code == 202
    assert order(client, "pm_bob", "k-2", who=ADMIN).status_code == 202
    assert upstreams.hits["payments"] == 2
    assert kept(database_url) == []


def lookups(client: TestClient) -> dict[tuple[str, str], float]:
    """orders_replica_lookups_total by (replica, result), as /metrics serves it."""
    found = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == "orders_replica_lookups":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    found[sample.labels["replica"], sample.labels["result"]] = sample.value
    return found


def test_what_each_order_found_in_the_replicas_is_counted(client: TestClient) -> None:
    assert lookups(client) == {(r, result): 0.0 for r in ("product", "address", "payment_method")
                               for result in ("hit", "miss")}
    assert order(client, "pm_alice", "k-1").status_code == 202
    assert order(client, "pm_alice", "k-2").status_code == 202
    assert order(client, "pm_alice", "k-2").status_code == 202  # a retry looks nothing up
    # the product and the method were asked once, then held; "addr-1" is not an id the
    # address replica can hold (identity's are UUIDs), so identity is asked every time
    assert lookups(client) == {
        ("product", "hit"): 1.0, ("product", "miss"): 1.0,
        ("address", "hit"): 0.0, ("address", "miss"): 2.0,
        ("payment_method", "hit"): 1.0, ("payment_method", "miss"): 1.0}
