"""Products and categories stated whole under a chosen id (PUT), as the migration sync does:
idempotent, version and events only for a real change, and open to an admin or to the
sync's verified service identity, nobody else."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from catalog.app import MIGRATIONS_DIR, create_app
from catalog.settings import CatalogSettings
from chassis.http_client import H_SERVICE_IDENTITY
from chassis.migrations import upgrade_to_head
from chassis.registry_keys import new_key_pair
from chassis.service_identity import CallerSigner
from chassis.testing import TokenMinter, assert_problem
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

minter = TokenMinter()
SYNC_KEY, SYNC_PUBLIC = new_key_pair()
OTHER_KEY, OTHER_PUBLIC = new_key_pair()
ADMIN = minter.auth(["customer", "admin"])
CUSTOMER = minter.auth(["customer"])


def caller(name: str, key: str) -> dict[str, str]:
    """A service identity header minted now: one minted at import expires before the tests
    of a long session run."""
    return {H_SERVICE_IDENTITY: CallerSigner(name, key).token_for("catalog")}


RECORD = {"sku": "LG-000001", "name": "Blue kettle", "description": "1.7 l",
          "category": "kitchen", "price": {"amount": "39000", "currency": "KRW"},
          "status": "active"}


@pytest.fixture
def client(fresh_database: str) -> Iterator[TestClient]:
    upgrade_to_head(MIGRATIONS_DIR, fresh_database)
    settings = CatalogSettings(database_url=fresh_database, nats_url="", seed_demo=False,
                               registry_trusted_keys={"sync": SYNC_PUBLIC,
                                                      "orders": OTHER_PUBLIC})
    app = create_app(settings, key_source=minter.key_source())
    with TestClient(app) as c:
        c.post("/api/catalog/categories", json={"slug": "kitchen", "name": "Kitchen"},
               headers=ADMIN)
        yield c


def _outbox_types(url: str) -> list[str]:
    import asyncpg

    async def read() -> list[str]:
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            return [r[0] for r in await conn.fetch(
                "SELECT message_type FROM outbox ORDER BY id")]
        finally:
            await conn.close()

    return asyncio.run(read())


def test_put_creates_under_the_id_then_changes_only_what_differs(
        client: TestClient, fresh_database: str) -> None:
    pid = uuid.uuid4()
    url = f"/api/catalog/products/{pid}"
    first = client.put(url, json=RECORD, headers=caller("sync", SYNC_KEY))
    assert first.status_code == 201 and first.json()["id"] == str(pid)
    assert first.json()["version"] == 1
    again = client.put(url, json=RECORD, headers=caller("sync", SYNC_KEY))
    assert again.status_code == 200 and again.json()["version"] == 1
    assert _outbox_types(fresh_database) == ["ProductCreated.v1"]
    cheaper = client.put(url, json={**RECORD, "price": {"amount": "35000", "currency": "KRW"}},
                         headers=caller("sync", SYNC_KEY)).json()
    assert cheaper["version"] == 2 and cheaper["price"]["amount"] == "35000"
    off = client.put(url, json={**RECORD, "price": cheaper["price"], "status": "discontinued"},
                     headers=caller("sync", SYNC_KEY)).json()
    assert off["status"] == "discontinued" and client.get(url).status_code == 404
    record = client.get(f"/api/catalog/product-records/{pid}", headers=caller("sync", SYNC_KEY)).json()
    assert record["status"] == "discontinued" and record["version"] == 3
    # The monolith switches products on again; the catalog follows.
    back = client.put(url, json={**RECORD, "status": "active"}, headers=caller("sync", SYNC_KEY)).json()
    assert back["status"] == "active" and back["version"] == 4
    assert client.get(url).json()["price"]["amount"] == "39000"
    assert _outbox_types(fresh_database) == [
        "ProductCreated.v1", "PriceChanged.v1", "ProductDiscontinued.v1", "ProductUpdated.v1",
        "PriceChanged.v1"]


def test_put_guards_versions_sku_and_input(client: TestClient) -> None:
    url = f"/api/catalog/products/{uuid.uuid4()}"
    made = client.put(url, json=RECORD, headers=ADMIN)
    assert made.status_code == 201
    stale = client.put(url, json={**RECORD, "name": "Red kettle"},
                       headers={**ADMIN, "If-Match": 'W/"00-9"'})
    assert_problem(stale, 412)
    fresh = client.put(url, json={**RECORD, "name": "Red kettle"},
                       headers={**ADMIN, "If-Match": made.headers["ETag"]})
    assert fresh.status_code == 200 and fresh.json()["version"] == 2
    assert_problem(client.put(url, json={**RECORD, "sku": "LG-000002"}, headers=ADMIN), 422)
    assert_problem(client.put(f"/api/catalog/products/{uuid.uuid4()}", json=RECORD,
                              headers=ADMIN), 409)  # the SKU is another product's
    assert_problem(client.put(url, json={**RECORD, "status": "gone"}, headers=ADMIN), 422)
    assert_problem(client.put(url, json={**RECORD, "category": "nope"}, headers=ADMIN), 422)
    assert client.get(url).json()["name"] == "Red kettle"


def test_only_an_admin_or_the_sync_may_state_records(client: TestClient) -> None:
    url = f"/api/catalog/products/{uuid.uuid4()}"
    assert_problem(client.put(url, json=RECORD), 401)
    assert_problem(client.put(url, json=RECORD, headers=CUSTOMER), 403)
    # A verified service that is not the sync gets nothing more than without its identity.
    assert_problem(client.put(url, json=RECORD, headers=caller("orders", OTHER_KEY)), 401)
    forged = {H_SERVICE_IDENTITY: CallerSigner("sync", OTHER_KEY).token_for("catalog")}
    assert_problem(client.put(url, json=RECORD, headers=forged), 403)
    assert_problem(client.get(url.replace("products/", "product-records/")), 401)
    assert client.put(url, json=RECORD, headers=caller("sync", SYNC_KEY)).status_code == 201


def test_category_under_a_chosen_id(client: TestClient) -> None:
    cid = uuid.uuid4()
    url = f"/api/catalog/categories/{cid}"
    made = client.put(url, json={"slug": "garden", "name": "Garden"}, headers=caller("sync", SYNC_KEY))
    assert made.status_code == 200 and made.json()["id"] == str(cid)
    renamed = client.put(url, json={"slug": "garden", "name": "Garden & patio"}, headers=caller("sync", SYNC_KEY))
    assert renamed.json()["name"] == "Garden & patio"
    assert_problem(client.put(url, json={"slug": "yard", "name": "Yard"}, headers=caller("sync", SYNC_KEY)), 409)
    assert_problem(client.put(f"/api/catalog/categories/{uuid.uuid4()}",
                              json={"slug": "kitchen", "name": "Kitchen"}, headers=caller("sync", SYNC_KEY)), 409)
    names = {c["slug"]: c["name"] for c in client.get("/api/catalog/categories").json()["items"]}
    assert names["garden"] == "Garden & patio"


async def test_the_same_category_stated_at_once_is_one_category(fresh_database: str) -> None:
    """The migration sync's backfill and its follower may state one monolith category at the
    same moment: each finds none and inserts, the later insert meets the earlier's slug. That
    is the same category, not a conflict."""
    from catalog.service_layer.handlers import record_category
    from chassis.db import Database

    await asyncio.to_thread(upgrade_to_head, MIGRATIONS_DIR, fresh_database)
    db = Database(fresh_database, pool_size=8)
    try:
        for round_ in range(20):
            cid = uuid.uuid4()
            got = await asyncio.gather(*(
                record_category(db.unit_of_work(), cid, f"books-{round_}", "Books & paper")
                for _ in range(8)), return_exceptions=True)
            assert [g for g in got if isinstance(g, BaseException)] == []
            assert {g.id for g in got} == {cid}  # type: ignore[union-attr]
    finally:
        await db.dispose()
