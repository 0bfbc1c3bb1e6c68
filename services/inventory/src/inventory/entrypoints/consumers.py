"""The inventory's message entrypoints: one durable consumer per stream it reads.

Each handler decodes the contract and calls a service-layer function in the consumer's
transaction (the same one that writes the inbox row), so a message takes effect once.
"""

from __future__ import annotations

from typing import TypeVar

import structlog
from chassis.messaging.consumer import ConsumerSpec, Handler, lock_on
from chassis.messaging.envelope import Envelope, PoisonMessage, parse_payload
from chassis.messaging.streams import commands_stream_name, events_stream_name
from contracts.base import Contract
from contracts.catalog.v1 import (
    PriceChanged,
    ProductCreated,
    ProductDiscontinued,
    ProductUpdated,
)
from contracts.inventory.v1 import (
    CommitReservation,
    ReleaseStock,
    ReserveStock,
    RestockReservation,
)
from contracts.orders.v1 import OrderApproved
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.adapters.orm import ID_LENGTH, SKU_LENGTH
from inventory.adapters.repository import RESERVATION_LOCK_SPACE
from inventory.domain.model import Policy
from inventory.service_layer import handlers

log = structlog.get_logger("inventory")
# Every command's handler, and the approval's, locks the reservation it names first: taken
# with the inbox claim (ADR 0055).
RESERVATION_LOCK = lock_on(RESERVATION_LOCK_SPACE, "reservation_id")

COMMANDS_CONSUMER = "inventory-commands"
CATALOG_CONSUMER = "inventory-catalog-events"
ORDERS_CONSUMER = "inventory-orders-events"

C = TypeVar("C", bound=Contract)


def parse(model: type[C], envelope: Envelope) -> C:
    """The contract in the message, or PoisonMessage (dead-lettered at once)."""
    parsed = parse_payload(model, envelope)
    for name in ("reservation_id", "order_id"):
        value = getattr(parsed, name, None)
        if value is not None and not 0 < len(value) <= ID_LENGTH:
            raise PoisonMessage(f"{envelope.message_type}: {name} must be 1-{ID_LENGTH} chars")
    return parsed


def command_handlers(policy: Policy) -> dict[str, Handler]:
    async def reserve(session: AsyncSession, envelope: Envelope) -> None:
        await handlers.reserve_stock(session, parse(ReserveStock, envelope), policy,
                                     causation_id=str(envelope.message_id))

    async def release(session: AsyncSession, envelope: Envelope) -> None:
        await handlers.release_stock(session, parse(ReleaseStock, envelope),
                                     causation_id=str(envelope.message_id))

    async def commit(session: AsyncSession, envelope: Envelope) -> None:
        await handlers.commit_reservation(session, parse(CommitReservation, envelope),
                                          causation_id=str(envelope.message_id))

    async def restock(session: AsyncSession, envelope: Envelope) -> None:
        await handlers.restock_reservation(session, parse(RestockReservation, envelope),
                                           causation_id=str(envelope.message_id))

    return {ReserveStock.message_type(): reserve, ReleaseStock.message_type(): release,
            CommitReservation.message_type(): commit,
            RestockReservation.message_type(): restock}


async def product_created(session: AsyncSession, envelope: Envelope) -> None:
    event = parse(ProductCreated, envelope)
    if not 0 < len(event.sku) <= SKU_LENGTH:
        raise PoisonMessage(f"ProductCreated: SKU must be 1-{SKU_LENGTH} chars")
    await handlers.ensure_stock(session, event.sku)


async def product_discontinued(session: AsyncSession, envelope: Envelope) -> None:
    # The row stays: units on hand still exist and live reservations must still commit or
    # release. The catalog stops selling the product, so no new reservations should come.
    event = parse(ProductDiscontinued, envelope)
    log.info("product_discontinued", sku=event.sku)


async def ignore(session: AsyncSession, envelope: Envelope) -> None:
    """Names and prices do not touch stock; handled (and recorded in the inbox) as no-ops."""


def catalog_handlers() -> dict[str, Handler]:
    return {ProductCreated.message_type(): product_created,
            ProductDiscontinued.message_type(): product_discontinued,
            ProductUpdated.message_type(): ignore, PriceChanged.message_type(): ignore}


async def order_approved(session: AsyncSession, envelope: Envelope) -> None:
    """An approved order's units leave stock (ADR 0054): the approval names its reservation.
    An approval published before ADR 0054 names none; its order sent CommitReservation."""
    event = parse(OrderApproved, envelope)
    if event.reservation_id is None:
        return
    await handlers.commit_reservation(
        session, CommitReservation(reservation_id=event.reservation_id),
        causation_id=str(envelope.message_id))


def consumer_specs(policy: Policy) -> list[ConsumerSpec]:
    by_type = command_handlers(policy)
    return [
        ConsumerSpec(COMMANDS_CONSUMER, commands_stream_name("inventory"),
                     ["inventory.commands.>"], by_type,
                     locks=dict.fromkeys(by_type, RESERVATION_LOCK)),
        # CATALOG_EVENTS is declared by catalog; until it exists the consumer loop retries.
        ConsumerSpec(CATALOG_CONSUMER, events_stream_name("catalog"), ["catalog.events.>"],
                     catalog_handlers()),
        # Only the approval: no other order event is inventory's business.
        ConsumerSpec(ORDERS_CONSUMER, events_stream_name("orders"), [OrderApproved.subject()],
                     {OrderApproved.message_type(): order_approved},
                     locks={OrderApproved.message_type(): RESERVATION_LOCK}),
    ]
