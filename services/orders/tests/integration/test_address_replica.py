"""Orders' replica of the customers' addresses (ADR 0036): fed by identity's address events
through the real inbox consumer, read by placing an order for the caller's own address only;
identity (a real aiohttp stand-in on 127.0.0.1 that counts its calls) is asked only for what
the replica lacks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from chassis.clock import utc_now
from chassis.db import Database
from chassis.testing import assert_problem
from contracts.identity.v1 import AddressAdded, AddressUpdated
from fastapi.testclient import TestClient
from orders.entrypoints.consumers import IDENTITY_CONSUMER
from orders_kit import ADDRESS, MINTER, MUG, FakeUpstreams, deliver_events
from sqlalchemy import text

pytestmark = pytest.mark.integration

ALICE_ID, BOB_ID = str(uuid.uuid4()), str(uuid.uuid4())
ALICE = MINTER.auth(["customer"], subject=ALICE_ID, email="alice@example.com")
HOME, OFFICE, BOBS = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
SEOUL = {**ADDRESS}
BUSAN = {**ADDRESS, "city": "Busan", "postal_code": "48058", "line2": "Apt 3"}


@pytest.fixture
def upstreams() -> Iterator[FakeUpstreams]:
    fake = FakeUpstreams(addresses={(ALICE_ID, OFFICE): dict(SEOUL),
                                    (BOB_ID, BOBS): dict(SEOUL)}).start()
    yield fake
    fake.stop()



def order(client: TestClient, address_id: str, key: str = "k-1") -> Any:
    return client.post("/api/orders", headers={**ALICE, "Idempotency-Key": key}, json={
        "items": [{"product_id": MUG, "quantity": 1}], "shipping_address_id": address_id,
        "payment": {"card_number": "4242424242424242"}})


def added(user: str, address: str, fields: dict[str, Any]) -> AddressAdded:
    return AddressAdded(user_id=user, address_id=address, **fields)


def deliver(database_url: str, *events: Any) -> list[str]:
    return deliver_events(database_url, IDENTITY_CONSUMER, *events)


def query(database_url: str, sql: str) -> list[Any]:
    async def main() -> list[Any]:
        db = Database(database_url, pool_size=1)
        try:
            async with db.engine.connect() as conn:
                return list((await conn.execute(text(sql))).all())
        finally:
            await db.dispose()

    return asyncio.run(main())


def shipped_to(database_url: str) -> dict[str, Any]:
    """The address the order's saga ships to."""
    (data,) = query(database_url, "SELECT data FROM saga_instances")[0]
    return dict(orjson.loads(data) if isinstance(data, (str, bytes)) else data)["address"]


def test_the_address_comes_from_the_replica_without_calling_identity(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    assert deliver(database_url, added(ALICE_ID, HOME, BUSAN)) == ["handled"]
    resp = order(client, HOME)
    assert resp.status_code == 202, resp.text
    assert upstreams.hits["identity"] == 0
    assert shipped_to(database_url) == BUSAN


def test_another_customers_address_in_the_replica_is_not_used(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    deliver(database_url, added(BOB_ID, BOBS, BUSAN))
    doc = assert_problem(order(client, BOBS), 422)
    assert doc["detail"] == "unknown address"
    assert upstreams.hits["identity"] == 1  # asked, for alice: identity does not know it
    assert query(database_url, "SELECT count(*) FROM orders")[0][0] == 0


def test_a_missing_address_is_asked_of_identity_which_fills_the_replica(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    assert order(client, OFFICE).status_code == 202
    assert upstreams.hits["identity"] == 1
    rows = query(database_url, "SELECT customer_id, address_id, city FROM address_replica")
    assert [tuple(r) for r in rows] == [(ALICE_ID, OFFICE, "Seoul")]
    assert order(client, OFFICE, key="k-2").status_code == 202
    assert upstreams.hits["identity"] == 1


def test_an_older_event_does_not_overwrite_a_newer_one(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    now = utc_now()
    deliver(database_url,
            (AddressUpdated(user_id=ALICE_ID, address_id=HOME, **BUSAN), now),
            (added(ALICE_ID, HOME, SEOUL), now - timedelta(seconds=5)))  # late
    assert order(client, HOME).status_code == 202
    assert shipped_to(database_url) == BUSAN and upstreams.hits["identity"] == 0


def test_an_event_without_the_address_drops_it_and_identity_is_asked(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    deliver(database_url, added(ALICE_ID, OFFICE, BUSAN),
            AddressUpdated(user_id=ALICE_ID, address_id=OFFICE, country="KR"))
    assert query(database_url, "SELECT count(*) FROM address_replica")[0][0] == 0
    assert order(client, OFFICE).status_code == 202
    assert upstreams.hits["identity"] == 1 and shipped_to(database_url) == SEOUL


@pytest.mark.parametrize("payload", [
    {"user_id": "alice", "address_id": str(uuid.uuid4()), **SEOUL},
    {"user_id": str(uuid.uuid4()), "address_id": str(uuid.uuid4()), **SEOUL, "city": ""},
    {"user_id": str(uuid.uuid4()), "address_id": str(uuid.uuid4()), **SEOUL,
     "postal_code": "9" * 21},
])
def test_a_malformed_address_event_is_dead_lettered(database_url: str,
                                                     payload: dict[str, Any]) -> None:
    assert deliver(database_url, (AddressAdded, payload)) == ["dead_lettered"]
    assert query(database_url, "SELECT count(*) FROM address_replica")[0][0] == 0
