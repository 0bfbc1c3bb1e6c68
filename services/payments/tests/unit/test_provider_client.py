"""The provider client against the simulated provider served in-process (aiohttp)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from payments.adapters.provider import ProviderClient, ProviderRefused, ProviderUnavailable
from simulators.payment_provider.app import STORE, ProviderConfig, make_app

Serve = Callable[..., Any]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    servers: list[TestServer] = []

    # A generous client timeout by default: on a busy CI machine an in-process answer (the
    # provider writes SQLite) took longer than 0.3 s twice and a test that expects an answer
    # failed. The test of the provider's timeout card passes its own short timeout.
    async def start(client_timeout_s: float = 5.0,
                    **config: Any) -> tuple[ProviderClient, web.Application]:
        app = make_app(ProviderConfig(data_dir=tmp_path / uuid.uuid4().hex, **config))
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        client = ProviderClient(str(server.make_url("")), timeout_s=client_timeout_s,
                                attempts=2, retry_delay_s=0.01)
        clients.append(client)
        return client, app

    clients: list[ProviderClient] = []
    yield start
    for c in clients:
        await c.close()
    for s in servers:
        await s.close()


def key() -> str:
    return f"p-{uuid.uuid4().hex}"


async def token(client: ProviderClient, card: str) -> str:
    return (await client.tokenize(card, key())).id


@pytest.mark.parametrize(("card", "status", "reason"), [
    ("4242424242424242", "authorized", None), ("4000000000000002", "declined", "card_declined"),
    ("4000000000009995", "declined", "insufficient_funds"), ("5555555555554444", "authorized", None)])
async def test_test_cards(serve: Serve, card: str, status: str, reason: str | None) -> None:
    client, _ = await serve()
    charge = await client.authorize(key(), "100", "KRW", await token(client, card))
    assert (charge.status, charge.decline_reason) == (status, reason)


async def test_timeout_card_is_resolved_by_query_without_a_second_charge(serve: Serve) -> None:
    client, app = await serve(client_timeout_s=0.3, timeout_card_delay_ms=2000)
    k = key()
    charge = await client.authorize(k, "100", "KRW", await token(client, "4000000000000119"))
    assert (charge.status, charge.decline_reason) == ("declined", "provider_timeout")
    assert app[STORE].by_key(k)["attempts"] == 1


async def test_a_repeated_authorize_gets_the_same_charge(serve: Serve) -> None:
    client, app = await serve()
    k = key()
    t = await token(client, "4242424242424242")
    first = await client.authorize(k, "100", "KRW", t)
    again = await client.authorize(k, "100", "KRW", t)
    assert first == again
    assert len(app[STORE].all()) == 1 and app[STORE].by_key(k)["attempts"] == 2


async def test_capture_void_refund_are_idempotent_and_refuse_wrong_states(serve: Serve) -> None:
    client, _ = await serve()
    a = await client.authorize(key(), "100", "KRW", await token(client, "4242424242424242"))
    assert (await client.change(a.id, "capture")).status == "captured"
    assert (await client.change(a.id, "capture")).status == "captured"
    with pytest.raises(ProviderRefused, match="invalid_state"):
        await client.change(a.id, "void")
    assert (await client.change(a.id, "refund")).status == "refunded"
    b = await client.authorize(key(), "100", "KRW", await token(client, "4242424242424242"))
    assert (await client.change(b.id, "void")).status == "voided"
    with pytest.raises(ProviderRefused, match="no_such_charge"):
        await client.change("ch_nope", "capture")


async def test_a_provider_that_always_fails_is_unavailable_and_charges_nothing(
        serve: Serve) -> None:
    client, app = await serve(failure_rate=1.0)
    with pytest.raises(ProviderUnavailable):
        await client.authorize(key(), "100", "KRW", "pm_any")
    with pytest.raises(ProviderUnavailable):
        await client.tokenize("4242424242424242", key())
    assert app[STORE].all() == []


async def test_an_unreachable_provider_is_unavailable() -> None:
    client = ProviderClient("http://127.0.0.1:1", timeout_s=0.3, attempts=2, retry_delay_s=0)
    try:
        with pytest.raises(ProviderUnavailable):
            await client.authorize(key(), "100", "KRW", "pm_any")
        with pytest.raises(ProviderUnavailable):
            await client.tokenize("4242424242424242", key())
        with pytest.raises(ProviderUnavailable):
            await client.void_by_key(key())
    finally:
        await client.close()


async def test_void_by_key_voids_an_orphaned_authorization(serve: Serve) -> None:
    client, app = await serve()
    k = key()
    assert await client.void_by_key(k) is None
    await client.authorize(k, "100", "KRW", await token(client, "4242424242424242"))
    assert (await client.void_by_key(k)).status == "voided"  # type: ignore[union-attr]
    assert app[STORE].by_key(k)["status"] == "voided"


async def test_the_vault_answers_a_repeat_with_the_same_token_and_refuses_key_reuse(
        serve: Serve) -> None:
    client, app = await serve()
    k = key()
    first = await client.tokenize("4242424242424242", k)
    assert (first.last4, first.brand) == ("4242", "visa") and first.id.startswith("pm_")
    assert await client.tokenize("4242424242424242", k) == first
    with pytest.raises(ProviderRefused, match="idempotency_key_reused"):
        await client.tokenize("5555555555554444", k)
    assert (await client.tokenize("5555555555554444", key())).brand == "mastercard"
    assert app[STORE].card_of(first.id) == "4242424242424242"


@pytest.mark.parametrize("card", [
    "4242424242424242".translate({ord(d): 0xFF10 + int(d) for d in "0123456789"}),
    "4242424242424241", "42424242", "4242-4242-4242-4242"])
async def test_the_vault_refuses_what_is_not_a_card_number(serve: Serve, card: str) -> None:
    client, _ = await serve()
    with pytest.raises(ProviderRefused, match="invalid_card"):
        await client.tokenize(card, key())


async def test_a_charge_on_an_unknown_payment_method_is_refused(serve: Serve) -> None:
    client, app = await serve()
    with pytest.raises(ProviderRefused, match="no_such_payment_method"):
        await client.authorize(key(), "100", "KRW", "pm_nope")
    assert app[STORE].all() == []


async def test_a_data_dir_from_before_the_vault_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    old = sqlite3.connect(tmp_path / "provider.sqlite3")
    old.execute("CREATE TABLE charges (id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL "
                "UNIQUE, status TEXT NOT NULL, decline_reason TEXT, amount TEXT NOT NULL, "
                "currency TEXT NOT NULL, card_last4 TEXT NOT NULL, attempts INTEGER NOT NULL "
                "DEFAULT 1, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)")
    old.execute("INSERT INTO charges VALUES ('ch_old', 'k-old', 'captured', NULL, '100', "
                "'KRW', '4242', 1, 'then', 'then')")
    old.commit()
    old.close()
    from simulators.payment_provider.store import ChargeStore

    store = ChargeStore(tmp_path)
    try:
        assert store.get("ch_old")["payment_method"] is None  # type: ignore[index]
        method, created = store.vault("4242424242424242", brand="visa",  # type: ignore[misc]
                                      idempotency_key=None)
        assert created and store.card_of(method["id"]) == "4242424242424242"
    finally:
        store.close()
