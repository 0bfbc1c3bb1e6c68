"""Stock adjustments: the migration's stock split moves units in and out of a SKU once per
adjustment id, with the sync's verified service identity only, never below what is
reserved (ADR 0034)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chassis.http_client import H_SERVICE_IDENTITY
from chassis.registry_keys import new_key_pair
from chassis.service_identity import CallerSigner
from chassis.testing import TokenMinter, assert_problem
from fastapi.testclient import TestClient
from inventory.app import create_app
from inventory.settings import InventorySettings
from test_api import reserve

pytestmark = pytest.mark.integration

minter = TokenMinter()
ADMIN = minter.auth(["customer", "admin"])
SYNC_KEY, SYNC_PUBLIC = new_key_pair()
OTHER_KEY, OTHER_PUBLIC = new_key_pair()
URL = "/api/inventory/stock/LG-000001/adjustments"


def caller(name: str, key: str) -> dict[str, str]:
    return {H_SERVICE_IDENTITY: CallerSigner(name, key).token_for("inventory")}


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    settings = InventorySettings(database_url=database_url, nats_url="",
                                 register_instance=False,
                                 registry_trusted_keys={"sync": SYNC_PUBLIC,
                                                        "orders": OTHER_PUBLIC})
    with TestClient(create_app(settings, key_source=minter.key_source()),
                    raise_server_exceptions=False) as c:
        yield c


def stock(client: TestClient) -> dict[str, int]:
    return client.get("/api/inventory/stock/LG-000001").json()


def test_an_adjustment_creates_the_row_and_a_repeat_answers_the_first_result(
        client: TestClient) -> None:
    sync = caller("sync", SYNC_KEY)
    first = client.post(URL, json={"id": "t-1", "delta": 5}, headers=sync)
    assert first.status_code == 200, first.text
    assert first.json() == {"sku": "LG-000001", "on_hand": 5, "available": 5, "reserved": 0,
                            "adjustment_id": "t-1", "delta": 5, "repeated": False}
    client.post(URL, json={"id": "t-2", "delta": 2}, headers=sync)
    again = client.post(URL, json={"id": "t-1", "delta": 5}, headers=sync)
    assert again.status_code == 200
    assert (again.json()["on_hand"], again.json()["repeated"]) == (5, True)
    assert stock(client)["on_hand"] == 7  # applied once
    out = client.post(URL, json={"id": "t-3", "delta": -7}, headers=sync)
    assert (out.status_code, out.json()["on_hand"]) == (200, 0)
    # The same id for another move is not a repeat.
    assert_problem(client.post(URL, json={"id": "t-1", "delta": 6}, headers=sync), 409)
    assert stock(client)["on_hand"] == 0


def test_units_reserved_never_leave_and_a_refusal_is_kept(client: TestClient,
                                                          database_url: str) -> None:
    sync = caller("sync", SYNC_KEY)
    client.post(URL, json={"id": "in", "delta": 5}, headers=sync)
    reserve(database_url, "r1", "LG-000001", 3)
    refused = client.post(URL, json={"id": "out", "delta": -3}, headers=sync)
    assert_problem(refused, 409)
    assert refused.json()["available"] == 2
    assert stock(client) == {"sku": "LG-000001", "on_hand": 5, "available": 2, "reserved": 3}
    # A repeat gets the refusal again, even once units are free enough.
    client.post(URL, json={"id": "more", "delta": 10}, headers=sync)
    assert_problem(client.post(URL, json={"id": "out", "delta": -3}, headers=sync), 409)
    ok = client.post(URL, json={"id": "out-2", "delta": -12}, headers=sync)
    assert ok.json() == {"sku": "LG-000001", "on_hand": 3, "available": 0, "reserved": 3,
                         "adjustment_id": "out-2", "delta": -12, "repeated": False}
    # Out of a SKU the inventory has never heard of: nothing is free there.
    assert_problem(client.post("/api/inventory/stock/LG-000009/adjustments",
                               json={"id": "x", "delta": -1}, headers=sync), 409)
    assert_problem(client.get("/api/inventory/stock/LG-000009"), 404)


def test_an_adjustment_above_the_bound_is_422_and_writes_nothing(client: TestClient) -> None:
    client.put("/api/inventory/stock/LG-000001", json={"on_hand": 1_000_000_000},
               headers=ADMIN)
    sync = caller("sync", SYNC_KEY)
    assert_problem(client.post(URL, json={"id": "big", "delta": 1}, headers=sync), 422)
    assert stock(client)["on_hand"] == 1_000_000_000
    ok = client.post(URL, json={"id": "big", "delta": -1}, headers=sync)  # never recorded
    assert ok.status_code == 200 and ok.json()["on_hand"] == 999_999_999


def test_only_the_sync_may_adjust(client: TestClient) -> None:
    body = {"id": "t-1", "delta": 5}
    assert_problem(client.post(URL, json=body, headers=ADMIN), 403)
    assert_problem(client.post(URL, json=body), 403)
    assert_problem(client.post(URL, json=body, headers=caller("orders", OTHER_KEY)), 403)
    # A key the inventory does not trust for "sync" is refused, not taken as no identity.
    assert_problem(client.post(URL, json=body, headers=caller("sync", OTHER_KEY)), 403)
    assert_problem(client.get("/api/inventory/stock/LG-000001"), 404)


@pytest.mark.parametrize("body", [
    {"id": "t", "delta": 0}, {"id": "t", "delta": "5"}, {"id": "t", "delta": 1.5},
    {"id": "t", "delta": True}, {"id": "", "delta": 1}, {"id": "x" * 201, "delta": 1},
    {"id": 5, "delta": 1}, {"delta": 1}, {"id": "t"}, {"id": "t", "delta": 1, "more": 1},
    {"id": "t", "delta": 2_000_000_000}, [1], "t"])
def test_bad_input_is_422_problem_and_writes_nothing(client: TestClient,
                                                      body: object) -> None:
    assert_problem(client.post(URL, json=body, headers=caller("sync", SYNC_KEY)), 422)
    assert_problem(client.post("/api/inventory/stock/lower-case/adjustments",
                               json={"id": "t", "delta": 1},
                               headers=caller("sync", SYNC_KEY)), 422)
    assert_problem(client.get("/api/inventory/stock/LG-000001"), 404)
