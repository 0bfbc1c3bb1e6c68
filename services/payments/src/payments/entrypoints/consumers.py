"""The payments' message entrypoint: the ``payments-commands`` consumer on PAYMENTS_COMMANDS.

Each handler decodes the contract and calls a service-layer function in the consumer's
transaction (the one that writes the inbox row), so a message takes effect once. A provider
that cannot be reached raises ProviderUnavailable: the consumer naks with backoff (0.2 s, 1 s,
5 s, 15 s) and after ``max_deliver`` (5) moves the command to DEAD_LETTERS, from where an
operator replays it (``mercato dlq replay``) — safe, since every command is idempotent per
payment id at the provider too.
"""

from __future__ import annotations

from typing import TypeVar

from chassis.messaging.consumer import ConsumerSpec, Handler, lock_on
from chassis.messaging.envelope import Envelope, PoisonMessage, parse_payload
from chassis.messaging.streams import commands_stream_name
from contracts.base import Contract
from contracts.payments import v1, v2
from contracts.payments.v1 import CapturePayment, ChargePayment, RefundPayment, VoidPayment
from sqlalchemy.ext.asyncio import AsyncSession

from payments.adapters.orm import ID_LENGTH
from payments.adapters.repository import PAYMENT_LOCK_SPACE
from payments.service_layer import handlers
from payments.service_layer.handlers import Provider

COMMANDS_CONSUMER = "payments-commands"

C = TypeVar("C", bound=Contract)


def parse(model: type[C], envelope: Envelope) -> C:
    """The contract in the message, or PoisonMessage (dead-lettered at once)."""
    parsed = parse_payload(model, envelope)
    for name in ("payment_id", "order_id"):
        if not 0 < len(getattr(parsed, name)) <= ID_LENGTH:
            raise PoisonMessage(f"{envelope.message_type}: {name} must be 1-{ID_LENGTH} chars")
    return parsed


def command_handlers(provider: Provider) -> dict[str, Handler]:
    async def authorize(session: AsyncSession, envelope: Envelope) -> None:
        await handlers.authorize_payment(session, parse(v2.AuthorizePayment, envelope),
                                         provider, causation_id=str(envelope.message_id))

    async def authorize_v1(session: AsyncSession, envelope: Envelope) -> None:
        # Sent by an orders release from before payment methods, and still in flight: its
        # card number is vaulted on receipt (see handlers.authorize_payment).
        await handlers.authorize_payment(session, parse(v1.AuthorizePayment, envelope),
                                         provider, causation_id=str(envelope.message_id))

    async def capture(session: AsyncSession, envelope: Envelope) -> None:
        await handlers.capture_payment(session, parse(CapturePayment, envelope), provider,
                                       causation_id=str(envelope.message_id))

    async def charge(session: AsyncSession, envelope: Envelope) -> None:
        await handlers.charge_payment(session, parse(ChargePayment, envelope), provider,
                                      causation_id=str(envelope.message_id))

    async def void(session: AsyncSession, envelope: Envelope) -> None:
        await handlers.void_payment(session, parse(VoidPayment, envelope), provider,
                                    causation_id=str(envelope.message_id))

    async def refund(session: AsyncSession, envelope: Envelope) -> None:
        await handlers.refund_payment(session, parse(RefundPayment, envelope), provider,
                                      causation_id=str(envelope.message_id))

    return {v2.AuthorizePayment.message_type(): authorize,
            v1.AuthorizePayment.message_type(): authorize_v1,
            CapturePayment.message_type(): capture, ChargePayment.message_type(): charge,
            VoidPayment.message_type(): void, RefundPayment.message_type(): refund}


def consumer_specs(provider: Provider) -> list[ConsumerSpec]:
    # One command at a time per fetch: each may wait on the provider, and a batch shares one
    # transaction (a slow or failing call would hold or roll back its neighbours).
    by_type = command_handlers(provider)
    # Every command's handler locks the payment it names first: taken with the inbox claim
    # (ADR 0055).
    return [ConsumerSpec(COMMANDS_CONSUMER, commands_stream_name("payments"),
                         ["payments.commands.>"], by_type, batch=1,
                         locks=dict.fromkeys(by_type, lock_on(PAYMENT_LOCK_SPACE,
                                                               "payment_id")))]
