"""The payments API against a real PostgreSQL (embedded), without NATS."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from chassis.db import Database
from chassis.testing import TokenMinter, assert_problem
from contracts.payments.v1 import CapturePayment
from fastapi.testclient import TestClient
from payments.app import create_app
from payments.settings import PaymentsSettings
from payments_kit import Payments, ProviderProcess

pytestmark = pytest.mark.integration

minter = TokenMinter()
ADMIN = minter.auth(["customer", "admin"])
CUSTOMER = minter.auth(["customer"])
CARD = "4242424242424242"


@pytest.fixture
def client(database_url: str, provider: ProviderProcess) -> Iterator[TestClient]:
    settings = PaymentsSettings(database_url=database_url, nats_url="",
                                register_instance=False, provider_url=provider.url)
    with TestClient(create_app(settings, key_source=minter.key_source()),
                    raise_server_exceptions=False) as c:
        yield c


def paid_order(database_url: str, provider: ProviderProcess) -> tuple[str, str]:
    """An order authorized and captured through the command handlers (own loop)."""
    token = uuid.uuid4().hex[:12]
    pid, oid = f"pay-{token}", f"order-{token}"

    async def main() -> None:
        db = Database(database_url, pool_size=2)
        provider_client = provider.client()
        try:
            pay = Payments(db, provider_client)
            await pay.send(await pay.authorize(pid, oid, CARD))
            await pay.send(CapturePayment(payment_id=pid, order_id=oid))
        finally:
            await provider_client.close()
            await db.dispose()

    asyncio.run(main())
    return pid, oid




def test_admin_reads_payments_and_ledger_without_the_card_number(
        client: TestClient, database_url: str, provider: ProviderProcess) -> None:
    pid, oid = paid_order(database_url, provider)
    one = client.get(f"/api/payments/payments/{pid}", headers=ADMIN)
    assert one.status_code == 200, one.text
    body = one.json()
    assert (body["status"], body["order_id"], body["card_last4"], body["amount"]) == (
        "CAPTURED", oid, "4242", {"amount": "15000", "currency": "KRW"})
    listed = client.get("/api/payments/payments", params={"order_id": oid}, headers=ADMIN)
    assert [p["payment_id"] for p in listed.json()["items"]] == [pid]
    ledger = client.get("/api/payments/ledger", params={"order_id": oid}, headers=ADMIN)
    assert ledger.status_code == 200
    lj = ledger.json()
    assert [(e["kind"], e["amount"]["amount"]) for e in lj["entries"]] == [
        ("authorize", "15000"), ("capture", "15000")]
    assert (lj["captured"], lj["net_captured"], lj["held"]) == ("15000", "15000", "0")
    for resp in (one, listed, ledger):
        assert CARD not in resp.text


def test_reads_are_admin_only(client: TestClient) -> None:
    for path, params in (("/api/payments/payments/p1", None),
                         ("/api/payments/payments", {"order_id": "o1"}),
                         ("/api/payments/ledger", {"order_id": "o1"})):
        assert_problem(client.get(path, params=params), 401)
        assert_problem(client.get(path, params=params, headers=CUSTOMER), 403)
        assert_problem(client.get(path, params=params,
                                  headers=minter.auth(["admin"], ttl_s=-60)), 401)


def test_unknown_payment_is_404_and_unknown_order_is_empty(client: TestClient) -> None:
    assert_problem(client.get("/api/payments/payments/nope", headers=ADMIN), 404)
    assert client.get("/api/payments/payments", params={"order_id": "nope"},
                      headers=ADMIN).json() == {"items": []}
    empty = client.get("/api/payments/ledger", params={"order_id": "nope"}, headers=ADMIN)
    assert (empty.json()["entries"], empty.json()["net_captured"]) == ([], "0")
    assert_problem(client.get("/api/payments/payments", headers=ADMIN), 422)
    assert_problem(client.get("/api/payments/payments/" + "x" * 201, headers=ADMIN), 422)


def dump(database_url: str) -> str:
    async def main() -> str:
        db = Database(database_url, pool_size=1)
        try:
            return await Payments(db, None).database_text()  # type: ignore[arg-type]
        finally:
            await db.dispose()

    return asyncio.run(main())


ALICE = minter.auth(["customer"], subject="alice")
BOB = minter.auth(["customer"], subject="bob")


def full_width(card: str) -> str:
    return card.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})


def test_a_customer_exchanges_a_card_for_a_payment_method_of_their_own(
        client: TestClient, database_url: str) -> None:
    made = client.post("/api/payments/payment-methods", json={"card_number": CARD},
                       headers=ALICE)
    assert made.status_code == 201, made.text
    method = made.json()
    assert (method["last4"], method["brand"]) == ("4242", "visa")
    assert method["id"].startswith("pm_") and CARD not in made.text
    assert made.headers["cache-control"] == "no-store"  # one customer's card
    assert client.get(f"/api/payments/payment-methods/{method['id']}",
                      headers=ALICE).json() == method
    assert [m["id"] for m in client.get("/api/payments/payment-methods",
                                        headers=ALICE).json()["items"]] == [method["id"]]
    # Another customer cannot see it (nor learn that it exists); an admin can.
    assert_problem(client.get(f"/api/payments/payment-methods/{method['id']}", headers=BOB),
                   404)
    assert client.get("/api/payments/payment-methods", headers=BOB).json() == {"items": []}
    assert client.get(f"/api/payments/payment-methods/{method['id']}",
                      headers=ADMIN).status_code == 200
    assert CARD not in dump(database_url)


def test_the_same_idempotency_key_and_card_is_the_same_payment_method(
        client: TestClient) -> None:
    def make(card: str, who: dict[str, str] = ALICE) -> Any:
        return client.post("/api/payments/payment-methods", json={"card_number": card},
                           headers={**who, "Idempotency-Key": "pm-key-1"})

    first, again = make(CARD), make(CARD)
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json() == again.json()
    assert_problem(make("5555555555554444"), 409)
    # Keys are per customer: bob's same key is his own card.
    bobs = make(CARD, BOB)
    assert bobs.status_code == 201 and bobs.json()["id"] != first.json()["id"]


@pytest.mark.parametrize("card", [full_width(CARD), "4242424242424241", "42", "4242 4242 4242 4242"])
def test_a_card_that_is_not_ascii_digits_with_a_valid_check_digit_is_422(
        client: TestClient, database_url: str, card: str) -> None:
    before = dump(database_url).count("payment_methods: ")
    resp = client.post("/api/payments/payment-methods", json={"card_number": card},
                       headers=ALICE)
    doc = assert_problem(resp, 422)
    assert "4242" not in str(doc.get("errors"))  # the number is not echoed
    assert dump(database_url).count("payment_methods: ") == before


def test_payment_methods_need_a_customer(client: TestClient) -> None:
    body = {"card_number": CARD}
    assert_problem(client.post("/api/payments/payment-methods", json=body), 401)
    assert_problem(client.post("/api/payments/payment-methods", json=body,
                               headers=minter.auth(["support"])), 403)
    assert_problem(client.post("/api/payments/payment-methods", json=body,
                               headers={**ALICE, "Idempotency-Key": "k" * 201}), 400)
