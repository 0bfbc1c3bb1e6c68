"""Translate catalog changes into integration events (contracts) staged in the outbox."""

from __future__ import annotations

from dataclasses import replace

from chassis.messaging.outbox import stage
from contracts.catalog.v1 import PriceChanged, ProductCreated, ProductDiscontinued, ProductUpdated
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.domain.model import ACTIVE, DISCONTINUED, Product


async def product_created(session: AsyncSession, p: Product) -> None:
    await stage(session, ProductCreated(
        product_id=str(p.id), sku=p.sku, name=p.name, category=p.category,
        price_amount=str(p.price.amount), price_currency=p.price.currency,
        product_version=p.version),
        correlation_id=str(p.id))


async def product_changed(session: AsyncSession, before: Product, after: Product) -> None:
    if (before.name, before.category, before.description) != \
            (after.name, after.category, after.description):
        await stage(session, ProductUpdated(
            product_id=str(after.id), sku=after.sku, name=after.name, category=after.category,
            product_version=after.version), correlation_id=str(after.id))
    if before.price != after.price:
        await stage(session, PriceChanged(
            product_id=str(after.id), sku=after.sku, old_amount=str(before.price.amount),
            new_amount=str(after.price.amount), currency=after.price.currency,
            product_version=after.version),
            correlation_id=str(after.id))


async def product_recorded(session: AsyncSession, before: Product, after: Product) -> None:
    """A whole record replaced: the events an edit and a status change would have made. A
    product coming back (discontinued, then active again) is announced as an update, with
    its version, so its followers read it again."""
    comeback = after.status == ACTIVE and before.status != ACTIVE
    if comeback:
        await stage(session, ProductUpdated(
            product_id=str(after.id), sku=after.sku, name=after.name, category=after.category,
            product_version=after.version), correlation_id=str(after.id))
        # Only a price change is left to tell: the update above said the rest.
        before = replace(before, name=after.name, category=after.category,
                         description=after.description)
    await product_changed(session, before, after)
    if after.status == DISCONTINUED and before.status != DISCONTINUED:
        await product_discontinued(session, after)


async def product_discontinued(session: AsyncSession, p: Product) -> None:
    await stage(session, ProductDiscontinued(product_id=str(p.id), sku=p.sku,
                                             product_version=p.version),
                correlation_id=str(p.id))
