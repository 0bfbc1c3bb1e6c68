"""Payments use cases.

The command handlers are plain async functions over the caller's session: the inbox consumer
runs them in the transaction that records the message as handled, tests call them directly.
Each change, its ledger entry and the event announcing it commit together.

The provider is called inside that transaction, under the payment's advisory lock. If the
transaction then fails, the redelivered command calls the provider again with the same
idempotency key or charge id, and the provider answers with what it already did: money moves
once. ``ProviderUnavailable`` escapes on purpose: the consumer naks and retries.

``ChargePayment`` (the order saga's payment step since ADR 0051) authorizes and captures in one
transaction: one command and one event where there were two of each.

Cards: ``AuthorizePayment.v2`` and ``ChargePayment`` name a payment method (a token of the
provider's vault) that must belong to the order's customer. A v1 command still in flight
carries the card number: it is vaulted on receipt and charged through the token like any
other, and it is never logged or stored (only its last four digits are).
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

import structlog
from chassis.auth import Principal
from chassis.cards import is_card_number
from chassis.clock import utc_now
from chassis.db import UnitOfWork
from chassis.errors import Conflict, NotFound, ServiceUnavailable, Unprocessable
from contracts.payments import v1, v2
from contracts.payments.v1 import CapturePayment, ChargePayment, RefundPayment, VoidPayment
from sqlalchemy.ext.asyncio import AsyncSession

from payments.adapters.provider import Charge, ProviderRefused, ProviderUnavailable, VaultedCard
from payments.adapters.repository import PaymentsRepository
from payments.domain.model import (
    AUTHORIZED,
    CAPTURE,
    CAPTURED,
    DECLINED,
    INVALID_CARD,
    PAYMENT_METHOD_NOT_FOUND,
    PAYMENT_NOT_FOUND,
    REFUND,
    REFUNDED,
    VOID,
    VOIDED,
    Balance,
    LedgerEntry,
    Payment,
    PaymentError,
    PaymentMethod,
    balance,
    parse_amount,
)
from payments.service_layer import events

log = structlog.get_logger("payments")

INVALID_AMOUNT = "invalid_amount"
ORDER_MISMATCH = "order_mismatch"


class Provider(Protocol):
    async def tokenize(self, card_number: str, idempotency_key: str) -> VaultedCard: ...

    async def authorize(self, idempotency_key: str, amount: str, currency: str,
                        payment_method: str) -> Charge: ...

    async def change(self, charge_id: str, operation: str) -> Charge: ...

    async def void_by_key(self, idempotency_key: str) -> Charge | None: ...


# -- commands (from the payments-commands consumer) --------------------------------------------

async def authorize_payment(session: AsyncSession,
                            cmd: v2.AuthorizePayment | v1.AuthorizePayment,
                            provider: Provider, *, now: datetime | None = None,
                            causation_id: str | None = None) -> Payment:
    """Hold the amount: PaymentAuthorized or PaymentDeclined. A repeat re-announces the
    outcome it had without calling the provider; a payment voided first is refused. The card
    is the v2 command's payment method (the order's customer's own, or declined
    ``payment_method_not_found``), or a v1 command's card number, vaulted first."""
    now = now or utc_now()
    repo = PaymentsRepository(session)
    await repo.lock(cmd.payment_id)
    known = await repo.get(cmd.payment_id)
    if known is not None:
        await _reannounce_authorize(session, known, causation_id)
        return known
    card_last4 = cmd.card_last4 if isinstance(cmd, v2.AuthorizePayment) else None
    try:
        parse_amount(cmd.amount)
    except PaymentError:
        return await _decline(session, cmd, INVALID_AMOUNT, card_last4, now, causation_id)
    if isinstance(cmd, v2.AuthorizePayment):
        method = await repo.method(cmd.payment_method_id)
        if method is None or not method.usable_by(cmd.customer_id):
            return await _decline(session, cmd, PAYMENT_METHOD_NOT_FOUND, card_last4, now,
                                  causation_id)
        token, card_last4 = method.id, method.last4
    else:
        vaulted = await _vault_v1_card(cmd, provider)
        if vaulted is None:
            return await _decline(session, cmd, INVALID_CARD, None, now, causation_id)
        token, card_last4 = vaulted.id, vaulted.last4
    payment = Payment.request(cmd.payment_id, cmd.order_id, cmd.amount, cmd.currency,
                              card_last4=card_last4, payment_method_id=token, now=now)
    assert payment.amount is not None
    try:
        charge = await provider.authorize(cmd.payment_id, str(payment.amount), cmd.currency,
                                          token)
    except ProviderRefused as exc:
        charge = Charge("", "declined", f"provider_{exc.reason}")
    entry: LedgerEntry | None = None
    if charge.status == "authorized":
        entry = payment.authorized(charge.id, now=now)
    else:
        payment.declined(charge.decline_reason or f"provider_{charge.status}",
                         provider_ref=charge.id or None, now=now)
    await repo.add(payment)
    if entry is not None:
        await repo.add_entry(entry)
        await events.authorized(session, payment, causation_id=causation_id)
    else:
        await events.declined(session, payment, causation_id=causation_id)
    log.info("payment_" + payment.status, payment_id=payment.payment_id,
             order_id=payment.order_id, reason=payment.reason)
    return payment


async def charge_payment(session: AsyncSession, cmd: ChargePayment, provider: Provider, *,
                         now: datetime | None = None,
                         causation_id: str | None = None) -> Payment:
    """Authorize and capture (ADR 0051): PaymentCaptured or PaymentDeclined. A repeat
    re-announces the outcome without calling the provider; a payment voided first is
    refused. An authorization the provider then refuses to capture is voided there and the
    charge declined, so a declined charge never leaves money held."""
    now = now or utc_now()
    repo = PaymentsRepository(session)
    await repo.lock(cmd.payment_id)
    # The method with the payment, in one round trip: the usual charge needs both.
    payment, method = await repo.get_with_method(cmd.payment_id, cmd.payment_method_id)
    if payment is not None and payment.status != AUTHORIZED:
        await _reannounce_charge(session, payment, causation_id)
        return payment
    entries: list[LedgerEntry] = []
    new = payment is None
    if payment is None:  # the usual case; AUTHORIZED only if an AuthorizePayment came first
        try:
            parse_amount(cmd.amount)
        except PaymentError:
            return await _decline(session, cmd, INVALID_AMOUNT, cmd.card_last4, now,
                                  causation_id)
        if method is None or not method.usable_by(cmd.customer_id):
            return await _decline(session, cmd, PAYMENT_METHOD_NOT_FOUND, cmd.card_last4, now,
                                  causation_id)
        payment = Payment.request(cmd.payment_id, cmd.order_id, cmd.amount, cmd.currency,
                                  card_last4=method.last4, payment_method_id=method.id,
                                  now=now)
        assert payment.amount is not None
        try:
            charge = await provider.authorize(cmd.payment_id, str(payment.amount),
                                              cmd.currency, method.id)
        except ProviderRefused as exc:
            charge = Charge("", "declined", f"provider_{exc.reason}")
        # "captured": this command's earlier delivery got that far before its rollback.
        if charge.status not in ("authorized", "captured"):
            payment.declined(charge.decline_reason or f"provider_{charge.status}",
                             provider_ref=charge.id or None, now=now)
            await repo.add(payment)
            await events.declined(session, payment, causation_id=causation_id)
            log.info("payment_declined", payment_id=payment.payment_id,
                     order_id=payment.order_id, reason=payment.reason)
            return payment
        entries.append(payment.authorized(charge.id, now=now))
    assert payment.provider_ref is not None
    try:
        await provider.change(payment.provider_ref, CAPTURE)
        entries.append(payment.captured(now=now))
    except ProviderRefused as exc:
        # Whatever the provider still holds of it is let go; a refusal of the void too means
        # it holds nothing (voided or expired there).
        with contextlib.suppress(ProviderRefused):
            await provider.change(payment.provider_ref, VOID)
        entries.append(payment.voided(f"provider_{exc.reason}", now=now))
    await (repo.add(payment) if new else repo.save(payment))
    for entry in entries:
        await repo.add_entry(entry)
    if payment.status == CAPTURED:
        await events.captured(session, payment, causation_id=causation_id)
    else:
        await events.declined(session, payment, causation_id=causation_id)
    log.info("payment_charged" if payment.status == CAPTURED else "payment_declined",
             payment_id=payment.payment_id, order_id=payment.order_id, reason=payment.reason)
    return payment


async def _reannounce_charge(session: AsyncSession, known: Payment,
                             causation_id: str | None) -> None:
    if known.status in (CAPTURED, REFUNDED):  # charged (and maybe given back since)
        await events.captured(session, known, causation_id=causation_id)
    else:  # declined, voided, or a void's tombstone
        await events.declined(session, known, causation_id=causation_id)
    log.info("charge_repeated", payment_id=known.payment_id, status=known.status)


async def _decline(session: AsyncSession,
                   cmd: v2.AuthorizePayment | v1.AuthorizePayment | ChargePayment, reason: str,
                   card_last4: str | None, now: datetime, causation_id: str | None) -> Payment:
    """Refused before the provider was asked: recorded (a repeat re-announces it) and told."""
    payment = Payment(cmd.payment_id, cmd.order_id, DECLINED, currency=cmd.currency,
                      card_last4=card_last4, reason=reason, created_at=now, updated_at=now)
    await PaymentsRepository(session).add(payment)
    await events.declined(session, payment, causation_id=causation_id)
    log.info("payment_declined", payment_id=payment.payment_id, order_id=payment.order_id,
             reason=reason)
    return payment


async def _vault_v1_card(cmd: v1.AuthorizePayment, provider: Provider) -> VaultedCard | None:
    """The token for an old command's card number, or None when it is no card number. The
    key is the payment's, so a redelivery gets the same token."""
    if not is_card_number(cmd.card_number):
        return None
    try:
        return await provider.tokenize(cmd.card_number, f"authorize-v1-{cmd.payment_id}")
    except ProviderRefused:
        return None


async def _reannounce_authorize(session: AsyncSession, known: Payment,
                                causation_id: str | None) -> None:
    if known.status == DECLINED or known.amount is None:  # declined, or a void tombstone
        await events.declined(session, known, causation_id=causation_id)
    else:  # it was authorized (and may have moved on since)
        await events.authorized(session, known, causation_id=causation_id)
    log.info("authorize_repeated", payment_id=known.payment_id, status=known.status)


async def _fail(session: AsyncSession, payment_id: str, order_id: str, operation: str,
                reason: str, causation_id: str | None) -> None:
    await events.failed(session, payment_id=payment_id, order_id=order_id,
                        operation=operation, reason=reason, causation_id=causation_id)
    log.warning("payment_operation_failed", payment_id=payment_id, order_id=order_id,
                operation=operation, reason=reason)


async def _load(session: AsyncSession, payment_id: str, order_id: str, operation: str,
                causation_id: str | None) -> Payment | None:
    """The locked payment, or None after announcing PaymentFailed."""
    repo = PaymentsRepository(session)
    await repo.lock(payment_id)
    payment = await repo.get(payment_id)
    if payment is None:
        await _fail(session, payment_id, order_id, operation, PAYMENT_NOT_FOUND, causation_id)
    elif payment.order_id != order_id:
        await _fail(session, payment_id, order_id, operation, ORDER_MISMATCH, causation_id)
        return None
    return payment


async def _provider_change(session: AsyncSession, provider: Provider, p: Payment,
                           operation: str, causation_id: str | None) -> bool:
    """Do ``operation`` at the provider; False (after PaymentFailed) if it refuses."""
    assert p.provider_ref is not None
    try:
        await provider.change(p.provider_ref, operation)
    except ProviderRefused as exc:
        await _fail(session, p.payment_id, p.order_id, operation, f"provider_{exc.reason}",
                    causation_id)
        return False
    return True


async def _operate(session: AsyncSession, provider: Provider, p: Payment, operation: str, *,
                   done: str, from_status: str, apply: Callable[[], LedgerEntry],
                   announce: Callable[..., Awaitable[None]],
                   causation_id: str | None) -> None:
    """The rule capture, void and refund share: already ``done`` → announce it again (the
    command was repeated); in ``from_status`` → the provider, then the ledger, then the event;
    any other status → PaymentFailed."""
    if p.status == done:
        await announce(session, p, causation_id=causation_id)
    elif p.status == from_status:
        if await _provider_change(session, provider, p, operation, causation_id):
            await _record(session, p, apply())
            await announce(session, p, causation_id=causation_id)
    else:
        await _fail(session, p.payment_id, p.order_id, operation, f"payment_{p.status}",
                    causation_id)


async def capture_payment(session: AsyncSession, cmd: CapturePayment, provider: Provider, *,
                          now: datetime | None = None,
                          causation_id: str | None = None) -> Payment | None:
    """Take the authorized amount (once): PaymentCaptured, or PaymentFailed."""
    at = now or utc_now()
    p = await _load(session, cmd.payment_id, cmd.order_id, CAPTURE, causation_id)
    if p is not None:
        await _operate(session, provider, p, CAPTURE, done=CAPTURED, from_status=AUTHORIZED,
                       apply=lambda: p.captured(now=at), announce=events.captured,
                       causation_id=causation_id)
    return p


async def void_payment(session: AsyncSession, cmd: VoidPayment, provider: Provider, *,
                       now: datetime | None = None,
                       causation_id: str | None = None) -> Payment | None:
    """Release what the payment holds: an authorization is voided (PaymentVoided), a
    charge's captured amount refunded (PaymentRefunded); anything else is PaymentFailed.

    A void for a payment never seen leaves a tombstone (a later authorize is declined) and
    releases what the provider holds under our key (voids an authorization, refunds a
    capture): one whose transaction here rolled back after the provider had already said yes."""
    now = now or utc_now()
    repo = PaymentsRepository(session)
    await repo.lock(cmd.payment_id)
    if await repo.get(cmd.payment_id) is None:
        orphan = await provider.void_by_key(cmd.payment_id)
        tombstone = Payment.void_tombstone(cmd.payment_id, cmd.order_id, reason=cmd.reason,
                                           now=now)
        tombstone.provider_ref = orphan.id if orphan else None
        await repo.add(tombstone)
        await events.voided(session, tombstone, causation_id=causation_id)
        log.info("payment_voided_before_authorize", payment_id=cmd.payment_id,
                 provider_charge_released=orphan is not None
                 and orphan.status in ("voided", "refunded"))
        return tombstone
    p = await _load(session, cmd.payment_id, cmd.order_id, VOID, causation_id)
    if p is not None and p.status in (CAPTURED, REFUNDED):
        # A charge's compensation (ADR 0051): what was taken goes back (once; a repeat
        # announces it again).
        at = now
        await _operate(session, provider, p, REFUND, done=REFUNDED, from_status=CAPTURED,
                       apply=lambda: p.refunded(cmd.reason, now=at), announce=events.refunded,
                       causation_id=causation_id)
    elif p is not None:
        at = now
        await _operate(session, provider, p, VOID, done=VOIDED, from_status=AUTHORIZED,
                       apply=lambda: p.voided(cmd.reason, now=at), announce=events.voided,
                       causation_id=causation_id)
    return p


async def refund_payment(session: AsyncSession, cmd: RefundPayment, provider: Provider, *,
                         now: datetime | None = None,
                         causation_id: str | None = None) -> Payment | None:
    """Give back the whole captured amount (once): PaymentRefunded, or PaymentFailed."""
    at = now or utc_now()
    p = await _load(session, cmd.payment_id, cmd.order_id, REFUND, causation_id)
    if p is not None:
        await _operate(session, provider, p, REFUND, done=REFUNDED, from_status=CAPTURED,
                       apply=lambda: p.refunded(cmd.reason, now=at), announce=events.refunded,
                       causation_id=causation_id)
    return p


async def _record(session: AsyncSession, p: Payment, entry: LedgerEntry) -> None:
    repo = PaymentsRepository(session)
    await repo.save(p)
    await repo.add_entry(entry)
    log.info("payment_" + p.status, payment_id=p.payment_id, order_id=p.order_id)


# -- HTTP use cases ----------------------------------------------------------------------------

def vault_key(customer_id: str, idempotency_key: str | None) -> str:
    """The provider's idempotency key for a customer's card: one per (customer, key), so a
    retried request gets the same payment method and one customer's key never names another
    customer's; without a key, a fresh one (still the same across this request's retries)."""
    if idempotency_key is None:
        return f"pm-{uuid.uuid4()}"
    digest = hashlib.sha256(f"{customer_id}\n{idempotency_key}".encode()).hexdigest()
    return f"pm-{digest}"


async def create_payment_method(uow: UnitOfWork, provider: Provider, principal: Principal, *,
                                card_number: str,
                                idempotency_key: str | None) -> PaymentMethod:
    """Exchange the caller's card for a payment method (the provider vaults the number;
    payments keeps the token, last four digits, brand and owner)."""
    try:
        vaulted = await provider.tokenize(card_number,
                                          vault_key(principal.subject, idempotency_key))
    except ProviderRefused as exc:
        if exc.reason == "idempotency_key_reused":
            raise Conflict("this Idempotency-Key was used for another card",
                           reason="idempotency_key_reused") from None
        raise Unprocessable("the card was refused", reason="invalid_card") from None
    except ProviderUnavailable:
        raise ServiceUnavailable("the card provider cannot be reached",
                                 headers={"Retry-After": "2"}) from None
    async with uow:
        method = await PaymentsRepository(uow.session).add_method(PaymentMethod(
            vaulted.id, principal.subject, vaulted.last4, vaulted.brand))
        await uow.commit()
    if method.customer_id != principal.subject:  # cannot happen: the key names the customer
        raise Conflict("this payment method belongs to someone else")
    log.info("payment_method_created", payment_method_id=method.id,
             customer_id=method.customer_id, brand=method.brand)
    return method


async def payment_methods_of(uow: UnitOfWork, principal: Principal) -> list[PaymentMethod]:
    async with uow:
        return await PaymentsRepository(uow.session).methods_of(principal.subject)


async def get_payment_method(uow: UnitOfWork, principal: Principal,
                             method_id: str) -> PaymentMethod:
    """Another customer's payment method is a 404: its existence is not told either."""
    async with uow:
        found = await PaymentsRepository(uow.session).method(method_id)
    if found is None or not principal.can_act_for(found.customer_id):
        raise NotFound(f"no payment method {method_id}")
    return found


async def get_payment(uow: UnitOfWork, payment_id: str) -> Payment:
    async with uow:
        found = await PaymentsRepository(uow.session).get(payment_id)
    if found is None:
        raise NotFound(f"no payment {payment_id}")
    return found


async def payments_for_order(uow: UnitOfWork, order_id: str) -> list[Payment]:
    async with uow:
        return await PaymentsRepository(uow.session).for_order(order_id)


async def ledger_for_order(uow: UnitOfWork, order_id: str) -> tuple[list[LedgerEntry], Balance]:
    async with uow:
        entries = await PaymentsRepository(uow.session).entries_for_order(order_id)
    return entries, balance(entries)
