"""The cart's message entrypoint: one durable consumer on the catalog's events.

It reads exactly the events it handles (a type it does not know on those subjects is
dead-lettered). Each handler runs in the consumer's transaction, the one that writes the
inbox row, so an event takes effect once however often it is delivered.
"""

from __future__ import annotations

from chassis.messaging.consumer import ConsumerSpec, Handler
from chassis.messaging.envelope import Envelope, PoisonMessage, parse_payload
from chassis.messaging.streams import events_stream_name
from contracts.catalog.v1 import PriceChanged, ProductDiscontinued, ProductUpdated
from sqlalchemy.ext.asyncio import AsyncSession

from cart.adapters.orm import ID_LENGTH, NAME_LENGTH, SKU_LENGTH
from cart.domain.model import CartError, parse_price
from cart.service_layer import handlers

CATALOG_CONSUMER = "cart-catalog-events"
HANDLED = (PriceChanged, ProductUpdated, ProductDiscontinued)


def _product_id(value: str, envelope: Envelope) -> str:
    if not 0 < len(value) <= ID_LENGTH:
        raise PoisonMessage(f"{envelope.message_type}: product_id must be 1-{ID_LENGTH} chars")
    return value


async def price_changed(session: AsyncSession, envelope: Envelope) -> None:
    event = parse_payload(PriceChanged, envelope)
    try:
        price = parse_price(event.new_amount)
    except CartError as exc:
        raise PoisonMessage(f"{envelope.message_type}: {exc}") from None
    if len(event.currency) != 3:
        raise PoisonMessage(f"{envelope.message_type}: currency must be 3 letters")
    await handlers.reprice(session, _product_id(event.product_id, envelope), price,
                           event.currency)


async def product_updated(session: AsyncSession, envelope: Envelope) -> None:
    event = parse_payload(ProductUpdated, envelope)
    if not 0 < len(event.sku) <= SKU_LENGTH or not 0 < len(event.name) <= NAME_LENGTH:
        raise PoisonMessage(f"{envelope.message_type}: sku or name out of bounds")
    await handlers.rename(session, _product_id(event.product_id, envelope), event.sku,
                          event.name)


async def product_discontinued(session: AsyncSession, envelope: Envelope) -> None:
    event = parse_payload(ProductDiscontinued, envelope)
    await handlers.discontinue(session, _product_id(event.product_id, envelope))


def catalog_handlers() -> dict[str, Handler]:
    return {PriceChanged.message_type(): price_changed,
            ProductUpdated.message_type(): product_updated,
            ProductDiscontinued.message_type(): product_discontinued}


def consumer_specs() -> list[ConsumerSpec]:
    # CATALOG_EVENTS is declared by catalog; until it exists the consumer loop retries.
    return [ConsumerSpec(CATALOG_CONSUMER, events_stream_name("catalog"),
                         sorted(e.subject() for e in HANDLED), catalog_handlers())]
