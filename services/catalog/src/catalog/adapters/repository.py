"""Catalog persistence: rows in, domain objects out. One session = one unit of work."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, cast, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import TSQUERY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.adapters.orm import catalog_meta, categories, products
from catalog.domain.model import ACTIVE, Category, Money, Product

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_SEARCH_TERMS = 8


def prefix_tsquery(q: str) -> str | None:
    """'red sho' -> 'red:* & sho:*' (every word must match, as a prefix). None: no words."""
    words = _WORD.findall(q.lower())[:MAX_SEARCH_TERMS]
    return " & ".join(f"{w}:*" for w in words) or None


@dataclass(frozen=True, slots=True)
class ProductPage:
    items: list[Product]
    total: int


_PRODUCT_COLUMNS = (products.c.id, products.c.sku, products.c.name, products.c.description,
                    categories.c.slug, products.c.price_amount, products.c.price_currency,
                    products.c.status, products.c.version, products.c.created_at,
                    products.c.updated_at)


def _product(row: Row[Any]) -> Product:
    return Product(id=row.id, sku=row.sku, name=row.name, description=row.description,
                   category=row.slug, price=Money.stored(row.price_amount, row.price_currency),
                   status=row.status, version=row.version, created_at=row.created_at,
                   updated_at=row.updated_at)


class CatalogRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def category_id(self, slug: str) -> uuid.UUID | None:
        return (await self.session.execute(
            select(categories.c.id).where(categories.c.slug == slug))).scalar_one_or_none()

    async def categories(self) -> list[Category]:
        rows = (await self.session.execute(select(categories).order_by(categories.c.name))).all()
        return [Category(r.id, r.slug, r.name) for r in rows]

    async def category(self, category_id: uuid.UUID) -> Category | None:
        row = (await self.session.execute(
            select(categories).where(categories.c.id == category_id))).first()
        return Category(row.id, row.slug, row.name) if row else None

    async def rename_category(self, category: Category) -> None:
        await self.session.execute(update(categories).where(categories.c.id == category.id)
                                   .values(name=category.name))

    async def add_category(self, category: Category) -> bool:
        """False when the slug or the id is taken. Any unique key: two statements of one
        category at once (same id, same slug) may meet on either index first."""
        result = await self.session.execute(
            insert(categories).values(id=category.id, slug=category.slug, name=category.name)
            .on_conflict_do_nothing())
        return bool(result.rowcount)

    async def get(self, product_id: uuid.UUID, *, for_update: bool = False) -> Product | None:
        stmt = (select(*_PRODUCT_COLUMNS)
                .join(categories, categories.c.id == products.c.category_id)
                .where(products.c.id == product_id))
        if for_update:
            stmt = stmt.with_for_update(of=products)
        row = (await self.session.execute(stmt)).first()
        return _product(row) if row else None

    async def sku_exists(self, sku: str) -> bool:
        found = await self.session.execute(
            select(func.count()).select_from(products).where(products.c.sku == sku))
        return found.scalar_one() > 0

    async def add(self, product: Product, category_id: uuid.UUID) -> None:
        await self.session.execute(products.insert().values(
            id=product.id, sku=product.sku, name=product.name, description=product.description,
            category_id=category_id, price_amount=product.price.amount,
            price_currency=product.price.currency, status=product.status,
            version=product.version, created_at=product.created_at,
            updated_at=product.updated_at))

    async def save(self, product: Product, category_id: uuid.UUID) -> None:
        await self.session.execute(update(products).where(products.c.id == product.id).values(
            name=product.name, description=product.description, category_id=category_id,
            price_amount=product.price.amount, price_currency=product.price.currency,
            status=product.status, version=product.version, updated_at=product.updated_at))

    async def search(self, *, q: str | None, category: str | None, page: int,
                     page_size: int, ids: list[uuid.UUID] | None = None) -> ProductPage:
        conditions = [products.c.status == ACTIVE]
        order: list[Any] = []
        if ids is not None:
            conditions.append(products.c.id.in_(ids))
        if category is not None:
            conditions.append(categories.c.slug == category)
        if q is not None and q.strip():
            tsq = prefix_tsquery(q)
            if tsq is None:
                return ProductPage([], 0)
            # PostgreSQL's parser reads "84e2f740" in a query as the number 84e2 then f740,
            # while the vector holds a SKU's parts unparsed (orm.SEARCH_VECTOR): also match
            # the words as typed, taken as lexemes without parsing.
            as_typed = " & ".join(f"'{term[:-2]}':*" for term in tsq.split(" & "))
            query = func.to_tsquery("simple", tsq).op("||")(cast(as_typed, TSQUERY))
            conditions.append(products.c.search.op("@@")(query))
            order.append(func.ts_rank(products.c.search, query).desc())
        order += [products.c.name, products.c.id]
        # One round trip: the window count rides along with the page.
        stmt = (select(*_PRODUCT_COLUMNS, literal_column("count(*) OVER ()").label("total"))
                .join(categories, categories.c.id == products.c.category_id)
                .where(*conditions).order_by(*order)
                .limit(page_size).offset((page - 1) * page_size))
        rows = (await self.session.execute(stmt)).all()
        if rows:
            return ProductPage([_product(r) for r in rows], rows[0].total)
        total = (await self.session.execute(
            select(func.count()).select_from(products)
            .join(categories, categories.c.id == products.c.category_id)
            .where(*conditions))).scalar_one()
        return ProductPage([], total)

    async def claim_flag(self, key: str) -> bool:
        """Set a one-time flag; True only for the first caller (concurrent callers wait)."""
        result = await self.session.execute(
            insert(catalog_meta).values(key=key, value="1").on_conflict_do_nothing())
        return bool(result.rowcount)
