"""The shipping service's message entrypoints: a durable consumer on its command queue, and
one on the orders' events that reads the approval (ADR 0054).

Each handler decodes the contract and calls a service-layer function in the consumer's
transaction (the same one that writes the inbox row), so a message takes effect once.
"""

from __future__ import annotations

from typing import TypeVar

from chassis.messaging.consumer import ConsumerSpec, Handler, lock_on
from chassis.messaging.envelope import Envelope, PoisonMessage
from chassis.messaging.streams import commands_stream_name, events_stream_name
from contracts.base import Contract
from contracts.orders.v1 import OrderApproved
from contracts.shipping.v1 import CancelShipment, CreateShipment, ReleaseShipment
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from shipping.adapters.repository import SHIPMENT_LOCK_SPACE
from shipping.domain.model import Timetable
from shipping.service_layer import handlers

COMMANDS_CONSUMER = "shipping-commands"
ORDERS_CONSUMER = "shipping-orders-events"

C = TypeVar("C", bound=Contract)


def parse(model: type[C], envelope: Envelope) -> C:
    """The contract in the message, or PoisonMessage (dead-lettered at once).

    The contracts bound ids to 1-200 characters, the width of the id columns."""
    try:
        return model.model_validate(envelope.payload)
    except ValidationError as exc:
        raise PoisonMessage(f"{envelope.message_type}: invalid payload "
                            f"({exc.error_count()} error(s))") from exc


def command_handlers(timetable: Timetable) -> dict[str, Handler]:
    async def create(session: AsyncSession, envelope: Envelope) -> None:
        await handlers.create_shipment(session, parse(CreateShipment, envelope), timetable,
                                       causation_id=str(envelope.message_id))

    async def cancel(session: AsyncSession, envelope: Envelope) -> None:
        await handlers.cancel_shipment(session, parse(CancelShipment, envelope),
                                       causation_id=str(envelope.message_id))

    async def release(session: AsyncSession, envelope: Envelope) -> None:
        await handlers.release_shipment(session, parse(ReleaseShipment, envelope), timetable)

    return {CreateShipment.message_type(): create, CancelShipment.message_type(): cancel,
            ReleaseShipment.message_type(): release}


def approval_handler(timetable: Timetable) -> Handler:
    async def order_approved(session: AsyncSession, envelope: Envelope) -> None:
        """An approved order's parcel goes to the carrier: the approval names its shipment.
        An approval published before ADR 0054 names none; its order sent ReleaseShipment."""
        event = parse(OrderApproved, envelope)
        if event.shipment_id is not None:
            await handlers.release_shipment(
                session, ReleaseShipment(shipment_id=event.shipment_id,
                                         order_id=event.order_id), timetable)

    return order_approved


def consumer_specs(timetable: Timetable) -> list[ConsumerSpec]:
    # Every command's handler, and the approval's, locks the shipment it names first: taken
    # with the inbox claim (ADR 0055).
    shipment_lock = lock_on(SHIPMENT_LOCK_SPACE, "shipment_id")
    by_type = command_handlers(timetable)
    return [ConsumerSpec(COMMANDS_CONSUMER, commands_stream_name("shipping"),
                         ["shipping.commands.>"], by_type,
                         locks=dict.fromkeys(by_type, shipment_lock)),
            # ORDERS_EVENTS is declared by orders; until it exists the consumer loop retries.
            # Only the approval: no other order event is shipping's business.
            ConsumerSpec(ORDERS_CONSUMER, events_stream_name("orders"),
                         [OrderApproved.subject()],
                         {OrderApproved.message_type(): approval_handler(timetable)},
                         locks={OrderApproved.message_type(): shipment_lock})]
