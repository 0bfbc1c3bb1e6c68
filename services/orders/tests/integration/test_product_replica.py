"""Orders' replica of the catalog's products (ADR 0036): fed by catalog events through the
real inbox consumer, read by placing an order; the catalog (a real aiohttp stand-in on
127.0.0.1 that counts its calls) is asked only for what the replica lacks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from chassis.db import Database
from chassis.testing import assert_problem
from contracts.base import Event
from contracts.catalog.v1 import PriceChanged, ProductCreated, ProductDiscontinued, ProductUpdated
from fastapi.testclient import TestClient
from orders.entrypoints.consumers import CATALOG_CONSUMER
from orders_kit import ADDRESS, MINTER, MUG, TEA, FakeUpstreams, deliver_events, sql
from sqlalchemy import text

pytestmark = pytest.mark.integration



def deliver(database_url: str, *events: Event | tuple[type[Event], dict[str, Any]]) -> list[str]:
    return deliver_events(database_url, CATALOG_CONSUMER, *events)

ALICE = MINTER.auth(["customer"], subject="alice", email="alice@example.com")


@pytest.fixture
def upstreams() -> Iterator[FakeUpstreams]:
    fake = FakeUpstreams(addresses={("alice", "addr-1"): dict(ADDRESS)}).start()
    yield fake
    fake.stop()



def order(client: TestClient, *items: tuple[str, int], key: str = "k-1") -> Any:
    return client.post("/api/orders", headers={**ALICE, "Idempotency-Key": key}, json={
        "items": [{"product_id": p, "quantity": q} for p, q in items],
        "shipping_address_id": "addr-1", "payment": {"card_number": "4242424242424242"}})


def total(client: TestClient, resp: Any) -> str:
    assert resp.status_code == 202, resp.text
    doc = client.get(f"/api/orders/{resp.json()['id']}", headers=ALICE).json()
    return str(doc["total"]["amount"])


def replica(database_url: str) -> dict[str, dict[str, Any]]:
    async def main() -> dict[str, dict[str, Any]]:
        db = Database(database_url, pool_size=1)
        try:
            async with db.engine.connect() as conn:
                rows = (await conn.execute(text("SELECT * FROM product_replica"))).all()
            return {r.id: dict(r._mapping) for r in rows}
        finally:
            await db.dispose()

    return asyncio.run(main())


def created(product_id: str, amount: str, version: int = 1, sku: str = "MUG-1") -> ProductCreated:
    return ProductCreated(product_id=product_id, sku=sku, name="Mug", category="kitchen",
                          price_amount=amount, price_currency="KRW", product_version=version)


def repriced(product_id: str, amount: str, version: int | None) -> PriceChanged:
    return PriceChanged(product_id=product_id, sku="MUG-1", old_amount="1", new_amount=amount,
                        currency="KRW", product_version=version)


def test_prices_come_from_the_replica_without_calling_the_catalog(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    # The catalog stand-in sells the mug at 12900; the replica says 15000 since version 2.
    assert deliver(database_url, created(MUG, "14000"), repriced(MUG, "15000", 2),
                   created(TEA, "3000", sku="TEA-1")) == ["handled"] * 3
    assert total(client, order(client, (MUG, 2), (TEA, 1))) == "33000"
    assert upstreams.hits["catalog"] == 0
    assert upstreams.hits["identity"] == 1  # the address is still asked


def test_a_product_missing_from_the_replica_is_priced_by_the_catalog_which_fills_it(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    deliver(database_url, created(MUG, "15000"))
    assert total(client, order(client, (MUG, 1), (TEA, 2))) == "22000"  # 15000 + 2 x 3500
    assert upstreams.hits["catalog"] == 1
    held = replica(database_url)
    assert (held[TEA]["price"], held[TEA]["sku"], held[TEA]["active"]) == (3500, "TEA-1", True)
    assert held[MUG]["price"] == 15000  # the catalog was not asked for it: left as it was
    # The next order finds both here.
    assert total(client, order(client, (MUG, 1), (TEA, 2), key="k-2")) == "22000"
    assert upstreams.hits["catalog"] == 1


def test_the_catalogs_answer_does_not_overwrite_a_newer_event(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    deliver(database_url, created(MUG, "15000", version=5))
    order(client, (MUG, 1), (TEA, 1))  # the stand-in answers the mug at version 1
    assert replica(database_url)[MUG]["price"] == 15000


def test_an_older_event_never_overwrites_a_newer_one_whatever_the_order_of_arrival(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    deliver(database_url, created(MUG, "10000", version=1), repriced(MUG, "30000", 3),
            repriced(MUG, "20000", 2),  # late: version 2 after 3
            ProductUpdated(product_id=MUG, sku="MUG-1", name="Mug, renamed", category="k",
                           product_version=2),  # late too, but the name's newest change
            created(MUG, "10000", version=1))  # a creation seen again
    held = replica(database_url)[MUG]
    assert (held["price"], held["name"], held["active"]) == (30000, "Mug, renamed", True)
    assert (held["details_version"], held["price_version"]) == (2, 3)
    deliver(database_url, created(TEA, "3500", sku="TEA-1"))
    assert total(client, order(client, (MUG, 1))) == "30000"
    assert upstreams.hits["catalog"] == 0


def test_a_discontinued_product_is_refused_from_the_replica(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    deliver(database_url, created(MUG, "12900"), created(TEA, "3500", sku="TEA-1"),
            ProductDiscontinued(product_id=MUG, sku="MUG-1", product_version=2))
    doc = assert_problem(order(client, (TEA, 1), (MUG, 1)), 422)
    assert doc["reason"] == "product_unavailable"
    assert upstreams.hits["catalog"] == 0  # the stand-in still sells it: not asked
    # An update that is not newer does not bring it back; a newer one (the catalog's
    # comeback of a discontinued product) does.
    deliver(database_url, ProductUpdated(product_id=MUG, sku="MUG-1", name="Mug",
                                         category="k", product_version=2))
    assert replica(database_url)[MUG]["active"] is False
    deliver(database_url, ProductUpdated(product_id=MUG, sku="MUG-1", name="Mug",
                                         category="k", product_version=3))
    assert total(client, order(client, (MUG, 1), key="k-2")) == "12900"


def test_at_one_version_discontinued_wins_over_an_update(database_url: str) -> None:
    # A record replaced with a new name and status DISCONTINUED stages both at one version.
    for first, second in ((True, False), (False, True)):
        update = ProductUpdated(product_id=MUG, sku="MUG-1", name="New", category="k",
                                product_version=4)
        gone = ProductDiscontinued(product_id=MUG, sku="MUG-1", product_version=4)
        deliver(database_url, created(MUG, "100", version=3),
                *((update, gone) if first else (gone, update)))
        assert replica(database_url)[MUG]["active"] is False, (first, second)
        sql(database_url, "DELETE FROM product_replica")


def test_an_event_without_a_version_drops_the_row_and_the_catalog_is_asked_again(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    deliver(database_url, created(MUG, "15000", version=3), repriced(MUG, "16000", None))
    assert MUG not in replica(database_url)
    assert total(client, order(client, (MUG, 1))) == "12900"
    assert upstreams.hits["catalog"] == 1


def test_a_row_the_catalog_has_not_confirmed_for_too_long_is_asked_again(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    deliver(database_url, created(MUG, "15000", version=1))
    # The catalog repriced it at version 2 and its event never came (a stalled consumer).
    upstreams.products[MUG] = {**upstreams.products[MUG], "version": 2}
    assert total(client, order(client, (MUG, 1), key="k-0")) == "15000"  # not stale yet
    sql(database_url, "UPDATE product_replica SET updated_at = now() - interval '11 minutes'")
    assert total(client, order(client, (MUG, 1))) == "12900"  # the catalog's price, fresh
    assert upstreams.hits["catalog"] == 1
    assert total(client, order(client, (MUG, 1), key="k-2")) == "12900"
    assert upstreams.hits["catalog"] == 1  # confirmed just now: the replica again


@pytest.mark.parametrize("payload", [
    {"product_id": "not-a-uuid", "sku": "MUG-1", "old_amount": "1", "new_amount": "2",
     "currency": "KRW", "product_version": 2},
    {"product_id": MUG, "sku": "MUG-1", "old_amount": "1", "new_amount": "lots",
     "currency": "KRW", "product_version": 2},
    {"product_id": MUG, "sku": "MUG-1", "old_amount": "1", "new_amount": "-5",
     "currency": "KRW", "product_version": 2},
])
def test_a_malformed_event_is_dead_lettered_and_changes_nothing(
        database_url: str, payload: dict[str, Any]) -> None:
    deliver(database_url, created(MUG, "15000"))
    assert deliver(database_url, (PriceChanged, payload)) == ["dead_lettered"]
    assert replica(database_url)[MUG]["price"] == 15000


def test_a_fill_that_fails_leaves_the_order_placed(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    # A SKU longer than the replica's column: the fill fails after the order committed.
    upstreams.products[MUG] = {**upstreams.products[MUG], "sku": "M" * 41}
    assert total(client, order(client, (MUG, 1))) == "12900"
    assert replica(database_url) == {}
