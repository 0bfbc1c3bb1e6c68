"""Catalog use cases. Each runs in one unit of work: all of it is written, or none."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

import structlog
from chassis.db import UnitOfWork
from chassis.errors import Conflict, NotFound, PreconditionFailed, Unprocessable

from catalog.adapters.repository import CatalogRepository, ProductPage
from catalog.domain.model import ACTIVE, DISCONTINUED, CatalogError, Category, Money, Product
from catalog.service_layer import events

log = structlog.get_logger("catalog")


@dataclass(frozen=True, slots=True)
class NewProduct:
    sku: str
    name: str
    description: str
    category: str
    price_amount: str
    price_currency: str


@dataclass(frozen=True, slots=True)
class ProductChanges:
    name: str | None = None
    description: str | None = None
    category: str | None = None
    price_amount: str | None = None
    price_currency: str | None = None


@dataclass(frozen=True, slots=True)
class ProductRecord(NewProduct):
    """A product stated whole, under an id the caller chose (the migration sync keeps a
    monolith product's derived id): a new product's fields and its status."""
    status: str


@dataclass(frozen=True, slots=True)
class Recorded:
    product: Product
    created: bool
    changed: bool


async def _category_id(repo: CatalogRepository, slug: str) -> uuid.UUID:
    category_id = await repo.category_id(slug)
    if category_id is None:
        raise Unprocessable(f"unknown category '{slug}'", title="Unknown category")
    return category_id


async def create_product(uow: UnitOfWork, cmd: NewProduct) -> Product:
    async with uow:
        repo = CatalogRepository(uow.session)
        try:
            product = Product.new(sku=cmd.sku, name=cmd.name, description=cmd.description,
                                  category=cmd.category,
                                  price=Money.parse(cmd.price_amount, cmd.price_currency))
        except CatalogError as exc:
            raise Unprocessable(str(exc)) from exc
        category_id = await _category_id(repo, product.category)
        if await repo.sku_exists(product.sku):
            raise Conflict(f"a product with SKU {product.sku} exists already")
        await repo.add(product, category_id)
        await events.product_created(uow.session, product)
        await uow.commit()
        log.info("product_created", sku=product.sku, product_id=str(product.id))
        return product


async def update_product(uow: UnitOfWork, product_id: uuid.UUID, changes: ProductChanges,
                         *, if_match: str | None = None) -> Product:
    async with uow:
        repo = CatalogRepository(uow.session)
        current = await repo.get(product_id, for_update=True)
        if current is None or current.status != ACTIVE:
            raise NotFound(f"no product {product_id}")
        if if_match is not None and if_match not in (current.etag, "*"):
            raise PreconditionFailed("the product changed since you read it; read it again")
        try:
            price = None
            if changes.price_amount is not None:
                price = Money.parse(changes.price_amount,
                                    changes.price_currency or current.price.currency)
            updated = current.changed(name=changes.name, description=changes.description,
                                      category=changes.category, price=price)
        except CatalogError as exc:
            raise Unprocessable(str(exc)) from exc
        await repo.save(updated, await _category_id(repo, updated.category))
        await events.product_changed(uow.session, current, updated)
        await uow.commit()
        log.info("product_updated", sku=updated.sku, version=updated.version)
        return updated


async def record_product(uow: UnitOfWork, product_id: uuid.UUID, record: ProductRecord,
                         *, if_match: str | None = None) -> Recorded:
    """Create or replace a product's record. Idempotent: the record it already holds
    changes nothing (no version, no event), which is what lets the migration sync replay."""
    async with uow:
        repo = CatalogRepository(uow.session)
        current = await repo.get(product_id, for_update=True)
        try:
            # The input is judged first: a request that is wrong is 422 whatever its If-Match.
            price = Money.parse(record.price_amount, record.price_currency)
            fresh = Product.new(sku=record.sku, name=record.name,
                                description=record.description, category=record.category,
                                price=price)
            if current is None:
                after = fresh.recorded(name=fresh.name, description=fresh.description,
                                       category=fresh.category, price=price,
                                       status=record.status)
                after = replace(after, id=product_id, version=1)
            else:
                if fresh.sku != current.sku:
                    raise CatalogError(f"a product's SKU never changes (it is {current.sku})")
                after = current.recorded(name=record.name, description=record.description,
                                         category=record.category, price=price,
                                         status=record.status)
        except CatalogError as exc:
            raise Unprocessable(str(exc)) from exc
        if current is None and if_match not in (None, "*"):
            raise PreconditionFailed("no such product: If-Match names no version")
        if current is not None and if_match is not None and if_match not in (current.etag, "*"):
            raise PreconditionFailed("the product changed since you read it; read it again")
        if current is not None and after is current:
            return Recorded(current, created=False, changed=False)
        category_id = await _category_id(repo, after.category)
        if current is None:
            if await repo.sku_exists(after.sku):
                raise Conflict(f"a product with SKU {after.sku} exists already")
            await repo.add(after, category_id)
            await events.product_created(uow.session, after)
            if after.status == DISCONTINUED:
                await events.product_discontinued(uow.session, after)
        else:
            await repo.save(after, category_id)
            await events.product_recorded(uow.session, current, after)
        await uow.commit()
        log.info("product_recorded", sku=after.sku, version=after.version,
                 created=current is None)
        return Recorded(after, created=current is None, changed=True)


async def get_product_record(uow: UnitOfWork, product_id: uuid.UUID) -> Product:
    """Any product, discontinued too (the public read answers 404 for those)."""
    async with uow:
        product = await CatalogRepository(uow.session).get(product_id)
    if product is None:
        raise NotFound(f"no product {product_id}")
    return product


async def discontinue_product(uow: UnitOfWork, product_id: uuid.UUID) -> Product:
    async with uow:
        repo = CatalogRepository(uow.session)
        current = await repo.get(product_id, for_update=True)
        if current is None or current.status != ACTIVE:
            raise NotFound(f"no product {product_id}")
        gone = current.discontinued()
        await repo.save(gone, await _category_id(repo, gone.category))
        await events.product_discontinued(uow.session, gone)
        await uow.commit()
        log.info("product_discontinued", sku=gone.sku)
        return gone


async def get_product(uow: UnitOfWork, product_id: uuid.UUID) -> Product:
    async with uow:
        product = await CatalogRepository(uow.session).get(product_id)
    if product is None or product.status != ACTIVE:
        raise NotFound(f"no product {product_id}")
    return product


async def search_products(uow: UnitOfWork, *, q: str | None, category: str | None, page: int,
                          page_size: int, ids: list[uuid.UUID] | None = None) -> ProductPage:
    async with uow:
        return await CatalogRepository(uow.session).search(
            q=q, category=category, page=page, page_size=page_size, ids=ids)


async def list_categories(uow: UnitOfWork) -> list[Category]:
    async with uow:
        return await CatalogRepository(uow.session).categories()


async def create_category(uow: UnitOfWork, slug: str, name: str) -> Category:
    try:
        category = Category.new(slug, name)
    except CatalogError as exc:
        raise Unprocessable(str(exc)) from exc
    async with uow:
        if not await CatalogRepository(uow.session).add_category(category):
            raise Conflict(f"category '{slug}' exists already")
        await uow.commit()
    return category


async def record_category(uow: UnitOfWork, category_id: uuid.UUID, slug: str,
                          name: str) -> Category:
    """A category under an id the caller chose (the sync keeps a monolith category's derived
    id); stating it again changes nothing, or only its name. Its slug never changes."""
    try:
        wanted = replace(Category.new(slug, name), id=category_id)
    except CatalogError as exc:
        raise Unprocessable(str(exc)) from exc
    async with uow:
        repo = CatalogRepository(uow.session)
        current = await repo.category(category_id)
        if current is None:
            if await repo.add_category(wanted):
                await uow.commit()
                return wanted
            # The slug is taken. By another id, or by this one: two statements of the same
            # category at once (the sync's backfill and its follower) both found none, and
            # the second insert waited for the first's commit. Read again to tell.
            current = await repo.category(category_id)
            if current is None:
                raise Conflict(f"category '{slug}' exists already under another id")
        if current.slug != wanted.slug:
            raise Conflict(f"category {category_id} is '{current.slug}'; a slug never "
                           "changes")
        if current.name != wanted.name:
            await repo.rename_category(wanted)
            await uow.commit()
    return wanted
