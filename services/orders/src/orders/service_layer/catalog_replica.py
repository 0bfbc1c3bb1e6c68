"""Keep orders' replica of the catalog's products (ADR 0036) from the catalog's events.

Each handler runs in the inbox consumer's transaction, so an event is applied once however
often it is delivered; the replica's per-part versions make the order of arrival irrelevant.
A price a moment old may still be charged: placing an order reads the replica as the last
event left it (typically under a second behind the catalog, the relay's and the consumer's
delay), and never a row the catalog has not confirmed for ``MAX_AGE_S``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation

import structlog
from chassis.messaging.consumer import Handler
from chassis.messaging.envelope import Envelope, PoisonMessage, parse_payload
from contracts.catalog.v1 import PriceChanged, ProductCreated, ProductDiscontinued, ProductUpdated
from sqlalchemy.ext.asyncio import AsyncSession

from orders.adapters.replica import ProductReplica
from orders.adapters.upstream import Product

log = structlog.get_logger("orders")

HANDLED = (ProductCreated, ProductUpdated, PriceChanged, ProductDiscontinued)
SKU_LENGTH, NAME_LENGTH = 40, 200


def _product_id(value: str, envelope: Envelope) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise PoisonMessage(f"{envelope.message_type}: product_id is not a UUID") from None


def _price(amount: str, currency: str, envelope: Envelope) -> Decimal:
    try:
        price = Decimal(amount)
    except InvalidOperation:
        raise PoisonMessage(f"{envelope.message_type}: price is not a decimal") from None
    if not price.is_finite() or price < 0 or price >= Decimal("1e16") or len(currency) != 3:
        raise PoisonMessage(f"{envelope.message_type}: price or currency out of bounds")
    return price


def _details(sku: str, name: str, envelope: Envelope) -> None:
    if not 0 < len(sku) <= SKU_LENGTH or not 0 < len(name) <= NAME_LENGTH:
        raise PoisonMessage(f"{envelope.message_type}: sku or name out of bounds")


def _when(envelope: Envelope) -> datetime:
    return envelope.occurred_at


async def product_created(session: AsyncSession, envelope: Envelope) -> None:
    event = parse_payload(ProductCreated, envelope)
    product_id = _product_id(event.product_id, envelope)
    _details(event.sku, event.name, envelope)
    price = _price(event.price_amount, event.price_currency, envelope)
    # A creation is the product's first version: without one (an older catalog), 0 lets
    # every later change win over it.
    await ProductReplica(session).put(
        Product(product_id, event.sku, event.name, price, event.price_currency, active=True),
        version=event.product_version or 0, changed_at=_when(envelope))


async def product_updated(session: AsyncSession, envelope: Envelope) -> None:
    event = parse_payload(ProductUpdated, envelope)
    _details(event.sku, event.name, envelope)
    await ProductReplica(session).details(
        _product_id(event.product_id, envelope), sku=event.sku, name=event.name,
        version=event.product_version, changed_at=_when(envelope))


async def price_changed(session: AsyncSession, envelope: Envelope) -> None:
    event = parse_payload(PriceChanged, envelope)
    product_id = _product_id(event.product_id, envelope)
    price = _price(event.new_amount, event.currency, envelope)
    replica = ProductReplica(session)
    if event.product_version is None:
        await replica.drop(product_id)  # cannot be ordered: the next order asks the catalog
        log.info("product_replica_dropped", product_id=product_id, reason="no_version")
        return
    await replica.price(product_id, price=price, currency=event.currency,
                        version=event.product_version, changed_at=_when(envelope))


async def product_discontinued(session: AsyncSession, envelope: Envelope) -> None:
    event = parse_payload(ProductDiscontinued, envelope)
    product_id = _product_id(event.product_id, envelope)
    replica = ProductReplica(session)
    if event.product_version is None:
        await replica.drop(product_id)
        log.info("product_replica_dropped", product_id=product_id, reason="no_version")
        return
    await replica.discontinued(product_id, version=event.product_version,
                               changed_at=_when(envelope))


def handlers() -> dict[str, Handler]:
    return {ProductCreated.message_type(): product_created,
            ProductUpdated.message_type(): product_updated,
            PriceChanged.message_type(): price_changed,
            ProductDiscontinued.message_type(): product_discontinued}
