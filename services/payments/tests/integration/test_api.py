"""The payments API against a real PostgreSQL (embedded), without NATS."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from chassis.db import Database
from chassis.testing import TokenMinter, assert_problem
from contracts.payments.v1 import AuthorizePayment, CapturePayment
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
            await pay.send(AuthorizePayment(payment_id=pid, order_id=oid, amount="15000",
                                            currency="KRW", card_number=CARD))
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
