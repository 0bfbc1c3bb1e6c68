"""Translate catalog changes into integration events (contracts) staged in the outbox."""

from __future__ import annotations

from chassis.messaging.outbox import stage
from contracts.catalog.v1 import PriceChanged, ProductCreated, ProductDiscontinued, ProductUpdated
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.domain.model import Product


async def product_created(session: AsyncSession, p: Product) -> None:
    await stage(session, ProductCreated(
        product_id=str(p.id), sku=p.sku, name=p.name, category=p.category,
        price_amount=str(p.price.amount), price_currency=p.price.currency),
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
            new_amount=str(after.price.amount), currency=after.price.currency),
            correlation_id=str(after.id))


async def product_discontinued(session: AsyncSession, p: Product) -> None:
    await stage(session, ProductDiscontinued(product_id=str(p.id), sku=p.sku),
                correlation_id=str(p.id))
