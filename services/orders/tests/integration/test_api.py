"""The orders API against a real PostgreSQL (embedded), without NATS, with identity and
catalog played by a tiny aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from chassis.db import Database
from chassis.testing import TokenMinter, assert_problem
from fastapi.testclient import TestClient
from orders_kit import ADDRESS, MUG, OLD, TEA, FakeUpstreams, api_client, count, database_text
from sqlalchemy import text

pytestmark = pytest.mark.integration

minter = TokenMinter()
ALICE_TOKEN = minter.token(subject="alice", roles=["customer"], email="alice@example.com")
ALICE = {"Authorization": f"Bearer {ALICE_TOKEN}"}
BOB = minter.auth(["customer"], subject="bob")
ADMIN = minter.auth(["customer", "admin"], subject="admin-1")
BODY = {"items": [{"product_id": MUG, "quantity": 2}, {"product_id": TEA, "quantity": 1}],
        "shipping_address_id": "addr-1", "payment": {"card_number": "4242424242424242"}}


@pytest.fixture
def upstreams() -> Iterator[FakeUpstreams]:
    fake = FakeUpstreams(addresses={("alice", "addr-1"): dict(ADDRESS),
                                    ("bob", "addr-b"): dict(ADDRESS)}).start()
    yield fake
    fake.stop()


@pytest.fixture
def client(database_url: str, upstreams: FakeUpstreams) -> Iterator[TestClient]:
    with api_client(database_url, upstreams, minter.key_source(), db_pool_size=15,
                    card_fingerprint_secret="a secret from the vault") as c:
        yield c


def post(client: TestClient, body: dict[str, Any] | None = None, *, key: str | None = "k-1",
         headers: dict[str, str] | None = None) -> Any:
    h = dict(headers or ALICE)
    if key is not None:
        h["Idempotency-Key"] = key
    return client.post("/api/orders", json=body or BODY, headers=h)




def rows(database_url: str, sql: str) -> int:
    """Run one statement in its own committed transaction; its single value."""
    async def main() -> int:
        db = Database(database_url, pool_size=1)
        try:
            async with db.engine.begin() as conn:
                return int((await conn.execute(text(sql))).scalar_one())
        finally:
            await db.dispose()

    return asyncio.run(main())


def written(database_url: str) -> tuple[int, int, int]:
    async def main() -> tuple[int, int, int]:
        db = Database(database_url, pool_size=1)
        try:
            return (await count(db, "orders"), await count(db, "saga_instances"),
                    await count(db, "outbox"))
        finally:
            await db.dispose()

    return asyncio.run(main())


def test_placing_an_order_answers_202_pending_and_writes_order_saga_and_outbox(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    resp = post(client)
    assert resp.status_code == 202, resp.text
    doc = resp.json()
    assert doc["status"] == "PENDING" and set(doc) == {"id", "status"}
    assert written(database_url) == (1, 1, 2)  # OrderPlaced + ReserveStock
    assert upstreams.authorizations == [f"Bearer {ALICE_TOKEN}"]  # the caller's token
    got = client.get(f"/api/orders/{doc['id']}", headers=ALICE)
    assert got.status_code == 200, got.text
    order = got.json()
    assert (order["status"], order["total"], order["reason"]) == (
        "PENDING", {"amount": "29300", "currency": "KRW"}, None)
    assert [(i["sku"], i["quantity"], i["unit_price"]["amount"]) for i in order["items"]] == [
        ("MUG-1", 2, "12900"), ("TEA-1", 1, "3500")]
    assert "card" not in got.text
    assert rows(database_url, "SELECT count(*) FROM orders WHERE customer_email = "
                              "'alice@example.com'") == 1


@pytest.mark.parametrize(("change", "detail"), [
    ({"shipping_address_id": "addr-b"}, "unknown address"),  # bob's, not alice's
    ({"items": [{"product_id": "nope", "quantity": 1}]}, "unknown product nope"),
    ({"items": [{"product_id": OLD, "quantity": 1}]}, f"unknown product {OLD}"),
])
def test_unknown_address_or_product_is_422_and_writes_nothing(
        client: TestClient, database_url: str, change: dict, detail: str) -> None:
    doc = assert_problem(post(client, {**BODY, **change}), 422)
    assert doc["detail"] == detail
    assert written(database_url) == (0, 0, 0)


@pytest.mark.parametrize("body", [
    {**BODY, "items": []},
    {**BODY, "items": [{"product_id": MUG, "quantity": 0}]},
    {**BODY, "items": [{"product_id": MUG, "quantity": 101}]},
    {**BODY, "items": [{"product_id": MUG, "quantity": 1}] * 2},
    {**BODY, "items": [{"product_id": f"p{i}", "quantity": 1} for i in range(51)]},
    {**BODY, "payment": {"card_number": "42"}},
    {k: v for k, v in BODY.items() if k != "shipping_address_id"},
])
def test_invalid_bodies_are_422_without_calling_anyone(
        client: TestClient, database_url: str, upstreams: FakeUpstreams, body: dict) -> None:
    assert_problem(post(client, body), 422)
    assert sum(upstreams.hits.values()) == 0
    assert written(database_url) == (0, 0, 0)


@pytest.mark.parametrize("key", [None, "", "k" * 201])
def test_the_idempotency_key_is_required(client: TestClient, key: str | None) -> None:
    assert_problem(post(client, key=key), 400)


def test_auth_is_required_and_checked(client: TestClient) -> None:
    assert_problem(client.post("/api/orders", json=BODY, headers={"Idempotency-Key": "x"}),
                   401)
    assert_problem(post(client, headers=minter.auth(["support"], subject="alice")), 403)
    assert_problem(client.get("/api/orders"), 401)


@pytest.mark.parametrize("down", ["identity", "catalog"])
def test_an_unavailable_upstream_is_503_with_retry_after_and_writes_nothing(
        client: TestClient, database_url: str, upstreams: FakeUpstreams, down: str) -> None:
    upstreams.down.add(down)
    # One product: identity and catalog share the fake's host, so they share a circuit
    # breaker here; two failing products would open it (5 failures in a row).
    resp = post(client, {**BODY, "items": [{"product_id": MUG, "quantity": 1}]})
    assert_problem(resp, 503)
    assert resp.headers["Retry-After"]
    assert upstreams.hits[down] == 3  # a GET is retried twice
    assert written(database_url) == (0, 0, 0)
    upstreams.down.clear()
    assert post(client, {**BODY, "items": [{"product_id": MUG, "quantity": 1}]}
                ).status_code == 202  # the same key works once they are back


def test_same_key_same_body_is_the_same_answer_and_one_order(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    first = post(client)
    reordered = {**BODY, "items": list(reversed(BODY["items"]))}
    again = post(client, reordered)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert written(database_url) == (1, 1, 2)
    assert upstreams.hits["identity"] == 1  # the repeat was answered from the database
    other = post(client, {**BODY, "items": [{"product_id": MUG, "quantity": 3}]})
    assert_problem(other, 409)
    # Keys are per customer: bob may use the same one.
    assert post(client, {**BODY, "shipping_address_id": "addr-b"}, headers=BOB).status_code == 202
    assert written(database_url)[0] == 2


def test_ten_concurrent_identical_requests_make_one_order(
        client: TestClient, database_url: str) -> None:
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: post(client, key="burst"), range(10)))
    assert [a.status_code for a in answers] == [202] * 10, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert written(database_url) == (1, 1, 2)


def test_reads_are_object_level(client: TestClient) -> None:
    mine = post(client).json()["id"]
    bobs = post(client, {**BODY, "shipping_address_id": "addr-b"}, key="b",
                headers=BOB).json()["id"]
    assert [o["id"] for o in client.get("/api/orders", headers=ALICE).json()] == [mine]
    assert {o["id"] for o in client.get("/api/orders", headers=ADMIN).json()} == {mine, bobs}
    assert client.get("/api/orders?status=APPROVED", headers=ADMIN).json() == []
    assert_problem(client.get("/api/orders?status=NOPE", headers=ADMIN), 422)
    assert_problem(client.get(f"/api/orders/{bobs}", headers=ALICE), 404)
    assert_problem(client.get("/api/orders/not-a-uuid", headers=ALICE), 404)
    assert client.get(f"/api/orders/{bobs}", headers=ADMIN).status_code == 200
    assert_problem(client.get(f"/api/orders/{bobs}/saga", headers=ALICE), 404)
    assert_problem(client.post(f"/api/orders/{bobs}/cancel", headers=ALICE), 404)


def test_the_saga_history_is_shown_to_the_owner_without_the_card(client: TestClient) -> None:
    order_id = post(client).json()["id"]
    resp = client.get(f"/api/orders/{order_id}/saga", headers=ALICE)
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["instance"]["status"] == "RUNNING"
    assert doc["instance"]["saga_name"] == "order.v3"
    assert [e["kind"] for e in doc["events"]] == ["started", "command_sent"]
    assert doc["events"][1]["message_type"] == "ReserveStock.v1"
    assert "4242424242424242" not in resp.text and "card_number" not in resp.text
    assert doc["instance"]["data"]["payment_method_id"] == "<redacted>"
    assert doc["instance"]["data"]["card_last4"] == "4242"


def test_cancel_is_accepted_while_pending_and_refused_once_final(
        client: TestClient, database_url: str) -> None:
    order_id = post(client).json()["id"]
    resp = client.post(f"/api/orders/{order_id}/cancel", headers=ALICE)
    assert resp.status_code == 202, resp.text
    assert (resp.json()["status"], resp.json()["cancel_requested"]) == ("PENDING", True)
    assert client.post(f"/api/orders/{order_id}/cancel", headers=ALICE).status_code == 202
    rows(database_url, f"UPDATE orders SET status = 'REJECTED' WHERE id = '{order_id}' "
                       "RETURNING 1")
    assert_problem(client.post(f"/api/orders/{order_id}/cancel", headers=ALICE), 409)
    rows(database_url, f"UPDATE orders SET status = 'CANCELLED' WHERE id = '{order_id}' "
                       "RETURNING 1")
    assert_problem(client.post(f"/api/orders/{order_id}/cancel", headers=ALICE), 409)


def test_the_service_counts_and_samples_sagas_an_older_release_started(
        database_url: str, upstreams: FakeUpstreams) -> None:
    """ADR 0051: the app's engine knows the definition sagas in flight at the upgrade run on
    (``order``), and the admission count includes them."""
    with api_client(database_url, upstreams, minter.key_source(), max_sagas_in_flight=1,
                    admission_refresh_s=0.05) as c:
        order_id = post(c).json()["id"]
        rows(database_url, "UPDATE saga_instances SET saga_name = 'order' "
                           f"WHERE id = '{order_id}' RETURNING 1")
        sampled = 'saga_running{saga="order",service="orders",step="reserve_stock"} 1.0'
        deadline = time.monotonic() + 20
        while sampled not in c.get("/metrics").text:
            assert time.monotonic() < deadline, "the older release's saga was never sampled"
            time.sleep(0.1)
        time.sleep(0.2)  # a few admission counts since the rename
        assert_problem(post(c, key="k-2"), 503)


def test_new_orders_are_refused_with_503_while_too_many_sagas_run(
        database_url: str, upstreams: FakeUpstreams) -> None:
    with api_client(database_url, upstreams, minter.key_source(), max_sagas_in_flight=1,
                    admission_refresh_s=0.05) as c:
        first = post(c)
        assert first.status_code == 202  # no saga was running: admitted
        deadline = time.monotonic() + 10
        while 'orders_sagas_running{service="orders"} 1.0' not in c.get("/metrics").text:
            assert time.monotonic() < deadline, "the running saga was never counted"
            time.sleep(0.05)
        # The chassis's saga metrics are wired too: the start counted at commit, the
        # running saga sampled by the step it waits in.
        assert 'saga_started_total{saga="order.v3",service="orders"} 1.0' in c.get("/metrics").text
        waiting = 'saga_running{saga="order.v3",service="orders",step="reserve_stock"} 1.0'
        while waiting not in c.get("/metrics").text:
            assert time.monotonic() < deadline + 10, "the saga sampler never ran"
            time.sleep(0.1)
        refused = post(c, key="k-2")
        assert_problem(refused, 503)
        assert refused.headers["Retry-After"]
        assert "in progress" in refused.json()["detail"]
        assert upstreams.hits["identity"] == 1  # refused before anyone else was asked
        assert written(database_url)[0] == 1
        again = post(c)  # a retry of the order already accepted is still answered
        assert again.status_code == 202 and again.json() == first.json()
        assert 'orders_refused_overload_total{service="orders"} 1.0' in c.get("/metrics").text


def dump(database_url: str) -> str:
    async def main() -> str:
        db = Database(database_url, pool_size=1)
        try:
            return await database_text(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


def saga_data(database_url: str) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        db = Database(database_url, pool_size=1)
        try:
            async with db.engine.connect() as conn:
                return dict((await conn.execute(text(
                    "SELECT data FROM saga_instances"))).scalar_one())
        finally:
            await db.dispose()

    return asyncio.run(main())


CARD = "4242424242424242"


def full_width(card: str) -> str:
    return card.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})


def test_a_card_is_exchanged_for_a_payment_method_before_anything_is_stored(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    first = post(client)
    assert first.status_code == 202, first.text
    assert upstreams.cards_received == [CARD]  # to payments, and to no one else
    data = saga_data(database_url)
    assert data["payment_method_id"].startswith("pm_") and data["card_last4"] == "4242"
    assert "card_number" not in data
    assert CARD not in dump(database_url)  # orders, saga, history, outbox, every table
    # A retry is answered from the database: the card is not exchanged again.
    assert post(client).json() == first.json()
    assert upstreams.hits["payments_tokenize"] == 1


def test_concurrent_identical_card_orders_exchange_the_card_for_one_payment_method(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: post(client, key="burst-card"), range(5)))
    assert [a.status_code for a in answers] == [202] * 5, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(upstreams.vault) == 1  # every exchange carried the same Idempotency-Key


def test_the_same_key_with_another_card_of_the_same_last_four_is_409(
        client: TestClient, upstreams: FakeUpstreams) -> None:
    assert post(client).status_code == 202
    other = {**BODY, "payment": {"card_number": "4000000000024242"}}  # also ends in 4242
    assert_problem(post(client, other), 409)
    assert upstreams.hits["payments_tokenize"] == 1


def test_a_payment_method_order_names_the_callers_own_method(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    mine = upstreams.add_method("pm_alice", "alice", "1111")
    bobs = upstreams.add_method("pm_bob", "bob", "2222")
    body = {**BODY, "payment": {"payment_method_id": mine}}
    placed = post(client, body)
    assert placed.status_code == 202, placed.text
    assert saga_data(database_url)["payment_method_id"] == mine
    assert saga_data(database_url)["card_last4"] == "1111"
    assert upstreams.hits["payments_tokenize"] == 0
    assert post(client, body).json() == placed.json()  # a retry: the same answer
    assert_problem(post(client, {**BODY, "payment": {"payment_method_id": "pm_bob"}}), 409)
    doc = assert_problem(post(client, {**BODY, "payment": {"payment_method_id": bobs}},
                              key="k-bob"), 422)
    assert (doc["detail"], doc["reason"]) == ("unknown payment method", "unknown_payment_method")
    assert_problem(post(client, {**BODY, "payment": {"payment_method_id": "pm_nope"}},
                        key="k-nope"), 422)
    assert written(database_url)[0] == 1


@pytest.mark.parametrize("payment", [
    {"card_number": full_width(CARD)},  # str.isdigit() and pydantic's \d accept these
    {"card_number": "4242424242424241"},  # the Luhn check fails
    {"card_number": CARD, "payment_method_id": "pm_1"},  # one of them, not both
    {},
])
def test_a_card_that_is_not_ascii_digits_passing_luhn_is_422_and_never_sent(
        client: TestClient, database_url: str, upstreams: FakeUpstreams,
        payment: dict[str, str]) -> None:
    resp = post(client, {**BODY, "payment": payment})
    doc = assert_problem(resp, 422)
    assert CARD not in resp.text and full_width(CARD) not in resp.text
    assert "4242" not in str(doc.get("errors"))
    assert sum(upstreams.hits.values()) == 0 and upstreams.cards_received == []
    assert written(database_url) == (0, 0, 0)


def test_payments_unavailable_for_the_exchange_is_503_and_writes_nothing(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    upstreams.down.add("payments")
    resp = post(client)
    assert_problem(resp, 503)
    assert resp.headers["Retry-After"]
    assert written(database_url) == (0, 0, 0)
    upstreams.down.clear()
    assert post(client).status_code == 202


def test_a_fifty_line_order_prices_every_line_in_one_catalog_call(
        client: TestClient, database_url: str, upstreams: FakeUpstreams) -> None:
    """A call per line made an order of 33+ lines meet the client's bulkhead (32 calls in
    flight per target): 503 for an order the schema accepts."""
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(50)]
    for i, product_id in enumerate(ids):
        upstreams.products[product_id] = {
            "id": product_id, "sku": f"SKU-{i}", "name": f"Thing {i}", "status": "active",
            "price": {"amount": "1000", "currency": "KRW"}}
    body = {**BODY, "items": [{"product_id": p, "quantity": 1} for p in ids]}
    resp = post(client, body)
    assert resp.status_code == 202, resp.text
    assert upstreams.hits["catalog"] == 1
    order = client.get(f"/api/orders/{resp.json()['id']}", headers=ALICE).json()
    assert (len(order["items"]), order["total"]["amount"]) == (50, "50000")
