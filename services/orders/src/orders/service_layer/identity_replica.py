"""Keep orders' replica of the customers' addresses (ADR 0036) from identity's events.

Each handler runs in the inbox consumer's transaction (applied once however often it is
delivered). An address changed in identity is shipped to from the moment its event reaches
orders (typically under a second); an order placed in between ships to the address as it
was, as if it had come a moment earlier. An event without the address's fields (an identity
that sent the country alone) drops the row: the next order asks identity.
"""

from __future__ import annotations

import uuid

import structlog
from chassis.messaging.consumer import Handler
from chassis.messaging.envelope import Envelope, PoisonMessage, parse_payload
from contracts.identity.v1 import AddressAdded, AddressUpdated
from sqlalchemy.ext.asyncio import AsyncSession

from orders.adapters.replica import ADDRESS_COLUMNS, AddressReplica, storable_address

log = structlog.get_logger("orders")

HANDLED = (AddressAdded, AddressUpdated)


def _uuid(value: str, what: str, envelope: Envelope) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise PoisonMessage(f"{envelope.message_type}: {what} is not a UUID") from None


async def address_changed(session: AsyncSession, envelope: Envelope) -> None:
    event_type = AddressAdded if envelope.message_type == AddressAdded.message_type() \
        else AddressUpdated
    event = parse_payload(event_type, envelope)
    customer_id = _uuid(event.user_id, "user_id", envelope)
    address_id = _uuid(event.address_id, "address_id", envelope)
    replica = AddressReplica(session)
    fields = {k: getattr(event, k) for k in ADDRESS_COLUMNS}
    if event.name is None:
        await replica.drop(customer_id, address_id)
        log.info("address_replica_dropped", address_id=address_id, reason="no_fields")
        return
    if not storable_address(fields):
        raise PoisonMessage(f"{envelope.message_type}: address fields missing or too long")
    await replica.put(customer_id, address_id, fields, changed_at=envelope.occurred_at)


def handlers() -> dict[str, Handler]:
    return {e.message_type(): address_changed for e in HANDLED}
