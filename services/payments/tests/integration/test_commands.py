"""Payments commands through the real inbox consumer, PostgreSQL and provider process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from chassis.db import Database
from chassis.logging import configure_logging
from chassis.messaging.consumer import Outcome
from chassis.messaging.envelope import Envelope
from contracts.payments import v1
from contracts.payments.v1 import CapturePayment, RefundPayment, VoidPayment
from payments.adapters.provider import ProviderClient
from payments.domain.model import PaymentMethod
from payments_kit import Payments, ProviderProcess, delivery, envelope, free_port

pytestmark = pytest.mark.integration

APPROVE, DECLINE, INSUFFICIENT, TIMEOUT = (
    "4242424242424242", "4000000000000002", "4000000000009995", "4000000000000119")


@pytest.fixture
async def pay(db: Database, provider: ProviderProcess) -> AsyncIterator[Payments]:
    client = provider.client()
    try:
        yield Payments(db, client)
    finally:
        await client.close()


def ids() -> tuple[str, str]:
    token = uuid.uuid4().hex[:12]
    return f"pay-{token}", f"order-{token}"


def types(events: list[dict]) -> list[str]:
    return [e["_type"] for e in events]


async def test_approved_card_is_authorized_with_last4_only(pay: Payments,
                                                           provider: ProviderProcess) -> None:
    pid, oid = ids()
    assert await pay.send(await pay.authorize(pid, oid)) == Outcome.HANDLED
    row = await pay.payment(pid)
    assert row is not None
    [charge] = provider.charges(pid)
    assert (row["status"], row["card_last4"], row["provider_ref"]) == ("authorized", "4242",
                                                                       charge["id"])
    [event] = await pay.events()
    assert event == {"payment_id": pid, "order_id": oid, "amount": "15000",
                     "currency": "KRW", "card_last4": "4242", "_type": "PaymentAuthorized.v1"}
    assert await pay.ledger(oid) == [("authorize", "15000")]
    assert row["payment_method_id"] == charge["payment_method"]
    assert "4242424242424242" not in await pay.outbox_text()
    assert "4242424242424242" not in await pay.database_text()


@pytest.mark.parametrize(("card", "reason"), [(DECLINE, "card_declined"),
                                              (INSUFFICIENT, "insufficient_funds")])
async def test_declining_cards_are_declined_with_the_providers_reason(
        pay: Payments, card: str, reason: str) -> None:
    pid, oid = ids()
    await pay.send(await pay.authorize(pid, oid, card))
    row = await pay.payment(pid)
    assert (row["status"], row["reason"]) == ("declined", reason)  # type: ignore[index]
    [event] = await pay.events()
    assert (event["_type"], event["reason"]) == ("PaymentDeclined.v1", reason)
    assert await pay.ledger(oid) == []
    # Capturing a declined payment is an invalid transition: PaymentFailed, nothing taken.
    await pay.send(CapturePayment(payment_id=pid, order_id=oid))
    [failed] = await pay.events("PaymentFailed.v1")
    assert (failed["operation"], failed["reason"]) == ("capture", "payment_declined")
    assert await pay.ledger(oid) == []


async def test_timeout_card_ends_declined_by_query_with_one_charge_attempt(
        pay: Payments, provider: ProviderProcess) -> None:
    pid, oid = ids()
    assert await pay.send(await pay.authorize(pid, oid, TIMEOUT)) == Outcome.HANDLED
    row = await pay.payment(pid)
    assert (row["status"], row["reason"]) == ("declined", "provider_timeout")  # type: ignore[index]
    [charge] = provider.charges(pid)
    assert (charge["status"], charge["attempts"]) == ("declined", 1)  # queried, not re-sent
    assert types(await pay.events()) == ["PaymentDeclined.v1"]


async def test_duplicate_authorize_charges_once_and_reannounces(
        pay: Payments, provider: ProviderProcess) -> None:
    pid, oid = ids()
    first = envelope(await pay.authorize(pid, oid))
    assert await pay.send(delivery(first)) == Outcome.HANDLED
    assert await pay.send(delivery(first)) == Outcome.DUPLICATE  # same message id
    assert await pay.send(await pay.authorize(pid, oid)) == Outcome.HANDLED  # re-sent: new id
    [charge] = provider.charges(pid)
    assert charge["attempts"] == 1  # the repeat never reached the provider
    announced = await pay.events("PaymentAuthorized.v1")
    assert len(announced) == 2 and announced[0] == announced[1]
    assert await pay.ledger(oid) == [("authorize", "15000")]


async def test_concurrent_duplicates_charge_once(pay: Payments,
                                                 provider: ProviderProcess) -> None:
    pid, oid = ids()
    command = await pay.authorize(pid, oid)
    outcomes = await asyncio.gather(*(pay.send(command) for _ in range(5)))
    assert outcomes == [Outcome.HANDLED] * 5
    [charge] = provider.charges(pid)
    assert charge["attempts"] == 1
    assert len(await pay.events("PaymentAuthorized.v1")) == 5
    assert await pay.ledger(oid) == [("authorize", "15000")]


async def test_capture_then_refund_each_once(pay: Payments, provider: ProviderProcess) -> None:
    pid, oid = ids()
    await pay.send(await pay.authorize(pid, oid, amount="99.5"))
    for _ in range(2):
        await pay.send(CapturePayment(payment_id=pid, order_id=oid))
    assert provider.charges(pid)[0]["status"] == "captured"
    for _ in range(2):
        await pay.send(RefundPayment(payment_id=pid, order_id=oid, reason="returned"))
    assert provider.charges(pid)[0]["status"] == "refunded"
    assert types(await pay.events()) == [
        "PaymentAuthorized.v1", "PaymentCaptured.v1", "PaymentCaptured.v1",
        "PaymentRefunded.v1", "PaymentRefunded.v1"]
    await pay.send(VoidPayment(payment_id=pid, order_id=oid))  # given back already: told so
    assert types(await pay.events())[-1] == "PaymentRefunded.v1"
    assert await pay.events("PaymentFailed.v1") == []
    assert await pay.ledger(oid) == [("authorize", "99.50"), ("capture", "99.50"),
                                     ("refund", "99.50")]
    row = await pay.payment(pid)
    assert (row["status"], row["reason"]) == ("refunded", "returned")  # type: ignore[index]


async def test_void_releases_the_hold_and_blocks_capture(pay: Payments,
                                                         provider: ProviderProcess) -> None:
    pid, oid = ids()
    await pay.send(await pay.authorize(pid, oid))
    await pay.send(VoidPayment(payment_id=pid, order_id=oid, reason="out_of_stock"))
    await pay.send(VoidPayment(payment_id=pid, order_id=oid))
    await pay.send(CapturePayment(payment_id=pid, order_id=oid))
    await pay.send(RefundPayment(payment_id=pid, order_id=oid))
    assert provider.charges(pid)[0]["status"] == "voided"
    assert types(await pay.events()) == ["PaymentAuthorized.v1", "PaymentVoided.v1",
                                         "PaymentVoided.v1", "PaymentFailed.v1",
                                         "PaymentFailed.v1"]
    assert [e["reason"] for e in await pay.events("PaymentFailed.v1")] == ["payment_voided"] * 2
    assert await pay.ledger(oid) == [("authorize", "15000"), ("void", "15000")]


async def test_void_before_authorize_leaves_a_tombstone_that_refuses_it(
        pay: Payments, provider: ProviderProcess) -> None:
    pid, oid = ids()
    await pay.send(VoidPayment(payment_id=pid, order_id=oid, reason="saga_timeout"))
    await pay.send(await pay.authorize(pid, oid))
    assert provider.charges(pid) == []  # never charged
    assert types(await pay.events()) == ["PaymentVoided.v1", "PaymentDeclined.v1"]
    [declined] = await pay.events("PaymentDeclined.v1")
    assert declined["reason"] == "saga_timeout"


async def test_commands_for_unknown_or_other_orders_payment_fail(pay: Payments) -> None:
    pid, oid = ids()
    await pay.send(CapturePayment(payment_id=pid, order_id=oid))
    await pay.send(await pay.authorize(pid, oid))
    await pay.send(RefundPayment(payment_id=pid, order_id="someone-else"))
    assert [(e["operation"], e["reason"]) for e in await pay.events("PaymentFailed.v1")] == [
        ("capture", "payment_not_found"), ("refund", "order_mismatch")]
    assert (await pay.payment(pid))["status"] == "authorized"  # type: ignore[index]


async def test_invalid_amount_is_declined_without_calling_the_provider(
        pay: Payments, provider: ProviderProcess) -> None:
    pid, oid = ids()
    await pay.send(await pay.authorize(pid, oid, amount="-5"))
    [declined] = await pay.events("PaymentDeclined.v1")
    assert declined["reason"] == "invalid_amount"
    assert provider.charges(pid) == []


async def test_unreachable_provider_naks_then_dead_letters_and_writes_nothing(
        db: Database) -> None:
    client = ProviderClient(f"http://127.0.0.1:{free_port()}", timeout_s=0.3, attempts=2,
                            retry_delay_s=0)
    pay = Payments(db, client)
    try:
        pid, oid = ids()
        method = PaymentMethod("pm_never_charged", pay.customer, "4242", "visa")
        await pay.add_method(method)
        env = envelope(await pay.authorize(pid, oid, method=method))
        first = delivery(env)
        assert await pay.send(first) == Outcome.RETRY
        assert first.state == "naked" and first.nak_delay == 0.2
        last = delivery(env)
        last.deliveries = 5
        assert await pay.send(last) == Outcome.DEAD_LETTERED
        [dead] = pay.dead_letters.messages
        assert dead.subject == "dlq.payments-commands"
        assert "ProviderUnavailable" in dead.headers["Mercato-Dlq-Error"]
        assert await pay.payment(pid) is None and await pay.events() == []
    finally:
        await client.close()


async def test_provider_restart_keeps_charges(db: Database, tmp_path: Path) -> None:
    process = ProviderProcess(tmp_path / "provider")
    process.start()
    client = process.client()
    pay = Payments(db, client)
    try:
        pid, oid = ids()
        await pay.send(await pay.authorize(pid, oid))
        process.stop()
        process.start()  # same data dir and port
        [charge] = process.charges(pid)
        assert charge["status"] == "authorized"
        await pay.send(CapturePayment(payment_id=pid, order_id=oid))
        [charge] = process.charges(pid)
        assert (charge["status"], charge["attempts"]) == ("captured", 1)
        assert (await pay.payment(pid))["status"] == "captured"  # type: ignore[index]
    finally:
        await client.close()
        process.stop()


async def test_flaky_provider_still_charges_at_most_once(db: Database, tmp_path: Path) -> None:
    """Half the provider's answers are 503s: commands are retried (as the consumer would) until
    they succeed, and every payment ends with exactly one charge."""
    process = ProviderProcess(tmp_path / "flaky",
                              extra_env={"PAYMENTS_PROVIDER_FAILURE_RATE": "0.5"})
    process.start()
    client = ProviderClient(process.url, timeout_s=0.5, attempts=2, retry_delay_s=0)
    pay = Payments(db, client)
    try:
        payments = [ids() for _ in range(6)]
        for pid, oid in payments:
            command = await pay.authorize(pid, oid)
            for _ in range(30):
                if await pay.send(command) == Outcome.HANDLED:
                    break
        for pid, _ in payments:
            assert (await pay.payment(pid))["status"] == "authorized"  # type: ignore[index]
        charges = process.charges()
        assert sorted(c["idempotency_key"] for c in charges) == sorted(p for p, _ in payments)
    finally:
        await client.close()
        process.stop()


async def test_another_customers_payment_method_is_declined_without_a_charge(
        pay: Payments, provider: ProviderProcess) -> None:
    pid, oid = ids()
    bobs = await pay.method(APPROVE, customer="bob")
    command = await pay.authorize(pid, oid, customer="alice", method=bobs)
    assert await pay.send(command) == Outcome.HANDLED
    assert provider.charges(pid) == []
    [declined] = await pay.events("PaymentDeclined.v1")
    assert declined["reason"] == "payment_method_not_found"
    unknown_pid, unknown_oid = ids()
    await pay.send(command.model_copy(update={"payment_id": unknown_pid,
                                              "order_id": unknown_oid,
                                              "payment_method_id": "pm_nope"}))
    assert provider.charges(unknown_pid) == []
    assert [e["reason"] for e in await pay.events("PaymentDeclined.v1")] == [
        "payment_method_not_found"] * 2


def legacy(pid: str, oid: str, card: str) -> v1.AuthorizePayment:
    return v1.AuthorizePayment(payment_id=pid, order_id=oid, amount="15000", currency="KRW",
                               card_number=card)


@pytest.mark.parametrize(("card", "status", "reason"), [
    (APPROVE, "authorized", None), (DECLINE, "declined", "card_declined"),
    (INSUFFICIENT, "declined", "insufficient_funds")])
async def test_a_v1_command_in_flight_is_vaulted_on_receipt_and_charged_by_token(
        pay: Payments, provider: ProviderProcess, card: str, status: str,
        reason: str | None) -> None:
    pid, oid = ids()
    assert await pay.send(legacy(pid, oid, card)) == Outcome.HANDLED
    [charge] = provider.charges(pid)
    assert charge["payment_method"].startswith("pm_")
    row = await pay.payment(pid)
    assert (row["status"], row["reason"], row["card_last4"]) == (status, reason, card[-4:])  # type: ignore[index]
    assert row["payment_method_id"] == charge["payment_method"]  # type: ignore[index]
    assert card not in await pay.database_text()  # outbox and inbox included


@pytest.mark.parametrize("card", [
    APPROVE.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"}),  # full-width digits
    "4242424242424241"])  # Luhn fails
async def test_a_v1_command_with_a_bad_card_is_declined_and_never_charged(
        pay: Payments, provider: ProviderProcess, card: str) -> None:
    pid, oid = ids()
    assert await pay.send(legacy(pid, oid, card)) == Outcome.HANDLED
    assert provider.charges(pid) == []
    [declined] = await pay.events("PaymentDeclined.v1")
    assert declined["reason"] == "invalid_card"
    assert card not in await pay.database_text()


# -- ChargePayment: authorize and capture in one step (ADR 0051) --------------------------------

async def test_a_charge_authorizes_and_captures_in_one_step_and_one_event(
        pay: Payments, provider: ProviderProcess) -> None:
    pid, oid = ids()
    assert await pay.send(await pay.charge(pid, oid, amount="99.5")) == Outcome.HANDLED
    [charge] = provider.charges(pid)
    assert (charge["status"], charge["attempts"]) == ("captured", 1)
    row = await pay.payment(pid)
    assert (row["status"], row["card_last4"], row["provider_ref"]) == (  # type: ignore[index]
        "captured", "4242", charge["id"])
    assert await pay.events() == [{"payment_id": pid, "order_id": oid, "amount": "99.50",
                                   "currency": "KRW", "_type": "PaymentCaptured.v1"}]
    assert await pay.ledger(oid) == [("authorize", "99.50"), ("capture", "99.50")]
    assert "4242424242424242" not in await pay.database_text()


async def test_a_repeated_charge_reannounces_without_asking_the_provider(
        pay: Payments, provider: ProviderProcess) -> None:
    pid, oid = ids()
    command = await pay.charge(pid, oid)
    outcomes = await asyncio.gather(*(pay.send(command) for _ in range(3)))
    assert outcomes == [Outcome.HANDLED] * 3
    [charge] = provider.charges(pid)
    assert (charge["status"], charge["attempts"]) == ("captured", 1)
    assert types(await pay.events()) == ["PaymentCaptured.v1"] * 3
    assert await pay.ledger(oid) == [("authorize", "15000"), ("capture", "15000")]


@pytest.mark.parametrize(("card", "reason"), [(DECLINE, "card_declined"),
                                              (INSUFFICIENT, "insufficient_funds")])
async def test_a_declined_charge_takes_nothing(pay: Payments, provider: ProviderProcess,
                                               card: str, reason: str) -> None:
    pid, oid = ids()
    await pay.send(await pay.charge(pid, oid, card))
    [event] = await pay.events()
    assert (event["_type"], event["reason"]) == ("PaymentDeclined.v1", reason)
    assert [c["status"] for c in provider.charges(pid)] == ["declined"]
    assert await pay.ledger(oid) == []


async def test_a_void_after_a_charge_gives_the_money_back(pay: Payments,
                                                          provider: ProviderProcess) -> None:
    """The charge step's compensation (the shipment could not be made, or a deadline
    passed): what was taken is refunded, once."""
    pid, oid = ids()
    await pay.send(await pay.charge(pid, oid))
    for _ in range(2):
        await pay.send(VoidPayment(payment_id=pid, order_id=oid, reason="timed_out"))
    assert provider.charges(pid)[0]["status"] == "refunded"
    assert types(await pay.events()) == ["PaymentCaptured.v1", "PaymentRefunded.v1",
                                         "PaymentRefunded.v1"]
    assert await pay.ledger(oid) == [("authorize", "15000"), ("capture", "15000"),
                                     ("refund", "15000")]
    row = await pay.payment(pid)
    assert (row["status"], row["reason"]) == ("refunded", "timed_out")  # type: ignore[index]


async def test_a_void_before_the_charge_refuses_it(pay: Payments,
                                                   provider: ProviderProcess) -> None:
    pid, oid = ids()
    await pay.send(VoidPayment(payment_id=pid, order_id=oid, reason="saga_timeout"))
    await pay.send(await pay.charge(pid, oid))
    assert provider.charges(pid) == []
    assert types(await pay.events()) == ["PaymentVoided.v1", "PaymentDeclined.v1"]


async def test_a_void_finding_a_capture_the_provider_kept_refunds_it(
        pay: Payments, provider: ProviderProcess) -> None:
    """A charge whose transaction rolled back after the provider captured (no payment row),
    then its compensation: the provider's capture is refunded and the tombstone refuses the
    late charge."""
    pid, oid = ids()
    command = await pay.charge(pid, oid)
    orphan = await pay.provider.authorize(pid, command.amount, "KRW",
                                          command.payment_method_id)
    await pay.provider.change(orphan.id, "capture")
    await pay.send(VoidPayment(payment_id=pid, order_id=oid, reason="saga_timeout"))
    await pay.send(command)
    [charge] = provider.charges(pid)
    assert charge["status"] == "refunded"
    assert types(await pay.events()) == ["PaymentVoided.v1", "PaymentDeclined.v1"]
    assert await pay.ledger(oid) == []


async def test_a_charge_redelivered_after_the_providers_capture_charges_once(
        pay: Payments, provider: ProviderProcess) -> None:
    pid, oid = ids()
    command = await pay.charge(pid, oid)
    orphan = await pay.provider.authorize(pid, command.amount, "KRW",
                                          command.payment_method_id)
    await pay.provider.change(orphan.id, "capture")  # then the transaction rolled back
    await pay.send(command)
    [charge] = provider.charges(pid)
    assert (charge["id"], charge["status"], charge["attempts"]) == (orphan.id, "captured", 2)
    assert types(await pay.events()) == ["PaymentCaptured.v1"]
    assert await pay.ledger(oid) == [("authorize", "15000"), ("capture", "15000")]


async def test_a_charge_the_provider_will_not_capture_is_voided_and_declined(
        pay: Payments, provider: ProviderProcess) -> None:
    """Authorized here, but the provider's charge was voided meanwhile (by an operator at
    the provider): the capture is refused, nothing stays held, the charge is declined."""
    pid, oid = ids()
    await pay.send(await pay.authorize(pid, oid))
    [charge] = provider.charges(pid)
    await pay.provider.change(charge["id"], "void")
    await pay.send(await pay.charge(pid, oid))
    assert provider.charges(pid)[0]["status"] == "voided"
    declined = await pay.events("PaymentDeclined.v1")
    assert [e["reason"] for e in declined] == ["provider_invalid_state"]
    assert await pay.ledger(oid) == [("authorize", "15000"), ("void", "15000")]


async def test_a_charge_whose_provider_charge_is_gone_is_declined_without_an_error(
        pay: Payments, provider: ProviderProcess) -> None:
    """The provider's charge was captured and refunded behind payments' back: neither the
    capture nor the void is accepted there, and nothing is held, so the charge is declined
    (the command is handled, not retried into the dead letters)."""
    pid, oid = ids()
    await pay.send(await pay.authorize(pid, oid))
    [charge] = provider.charges(pid)
    for operation in ("capture", "refund"):
        await pay.provider.change(charge["id"], operation)
    assert await pay.send(await pay.charge(pid, oid)) == Outcome.HANDLED
    assert [e["reason"] for e in await pay.events("PaymentDeclined.v1")] == [
        "provider_invalid_state"]
    assert (await pay.payment(pid))["status"] == "voided"  # type: ignore[index]


# -- a command's writes at commit (ADR 0052) ----------------------------------------------------

async def test_a_batch_reads_what_its_earlier_messages_wrote(
        pay: Payments, provider: ProviderProcess, capsys: pytest.CaptureFixture[str]) -> None:
    """One consumer batch is one transaction and a command's writes wait for its commit: the
    void of a charge in the same batch still finds it captured and refunds it. Without the
    writes before each read, the void found no payment (its tombstone then failed the
    batch's commit, handled again message by message)."""
    configure_logging("payments", "payments-test")
    pid, oid = ids()
    messages = [await pay.charge(pid, oid, amount="99.5"),
                VoidPayment(payment_id=pid, order_id=oid, reason="saga_timeout")]
    envelopes = [Envelope.new(m.subject(), m.message_type(), m.to_payload(),
                              correlation_id=oid) for m in messages]
    outcomes = await pay.commands.process_batch(
        [delivery(e, n) for n, e in enumerate(envelopes, 1)])
    assert outcomes == [Outcome.HANDLED] * 2
    assert '"batch_fell_back_to_single"' not in capsys.readouterr().out
    assert provider.charges(pid)[0]["status"] == "refunded"
    assert types(await pay.events()) == ["PaymentCaptured.v1", "PaymentRefunded.v1"]
    assert await pay.ledger(oid) == [("authorize", "99.50"), ("capture", "99.50"),
                                     ("refund", "99.50")]


async def test_a_charge_writes_once_at_commit(pay: Payments, pg_server: Any,
                                              database_url: str) -> None:
    """A charge's payment, its two ledger entries and its event go out as one statement
    before the COMMIT (ADR 0052): its round trips are the inbox claim with the payment's lock,
    one read of the payment and the method together (ADR 0055), one write and the COMMIT."""
    warm, measured = ids(), ids()
    commands = [await pay.charge(*warm), await pay.charge(*measured)]
    with pg_server.statements_logged(database_url.rsplit("/", 1)[1]) as logged:
        one = Database(database_url, pool_size=1)
        try:
            pid = (await one.fetch_once("SELECT pg_backend_pid() AS pid"))[0]["pid"]
            alone = Payments(one, pay.provider)
            for command in commands:  # the first warms the connection (asyncpg's type queries)
                before = len(logged(pid))
                assert await alone.send(command) == Outcome.HANDLED
                sent = [" ".join(s.split(": ", 1)[1].split()) for s in logged(pid)[before:]]
        finally:
            await one.dispose()
    writes = [s for s in sent if s.startswith(("BEGIN;", "WITH", "INSERT", "UPDATE"))]
    assert len(writes) == 2 and len(sent) == 4, sent
    assert "LEFT JOIN payment_methods" in sent[1], sent
    assert writes[0].startswith(
        f"BEGIN; SELECT pg_advisory_xact_lock(7244, hashtext('{measured[0]}')); "
        "INSERT INTO inbox"), writes
    assert all(part in writes[1] for part in (
        "INSERT INTO payments", "INSERT INTO ledger_entries", "INSERT INTO outbox")), writes
    assert await pay.ledger(measured[1]) == [("authorize", "15000"), ("capture", "15000")]
