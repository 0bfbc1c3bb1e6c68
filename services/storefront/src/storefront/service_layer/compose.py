"""API composition: each page's data from several services at once, with partial results.

The parts of a page are fetched concurrently; a part whose service cannot answer (down,
slow past its timeout, circuit open) is marked missing and the page renders with the rest.
Only the part a page cannot exist without (the product of a product page, the order of an
order page) makes the whole page an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import structlog
from chassis.http_client import UpstreamUnavailable

from storefront.adapters.backends import Backends
from storefront.domain.model import Availability, Composed, Paging

log = structlog.get_logger("storefront.compose")


async def _part(page: Composed, name: str, call: Awaitable[Any], default: Any = None) -> None:
    try:
        page.parts[name] = await call
    except UpstreamUnavailable as exc:
        log.info("page_part_missing", part=name, target=exc.target if hasattr(exc, "target")
                 else None, detail=str(exc)[:200])
        page.parts[name] = default
        page.mark_missing(name)


def availability_of(stock: dict[str, dict[str, Any]] | None, sku: str) -> Availability:
    if stock is None:
        return Availability(known=False)
    row = stock.get(sku)
    if row is None:
        # Inventory answered and has no row: nothing on hand (yet).
        return Availability(known=True, available=0)
    return Availability(known=True, available=int(row.get("available", 0)))


async def home(backends: Backends, featured: int = 8) -> Composed:
    page = Composed()
    await asyncio.gather(
        _part(page, "categories", backends.categories(), []),
        _part(page, "products", backends.products(page_size=featured),
              {"items": [], "total": 0}))
    await _with_stock(page, backends)
    return page


async def search(backends: Backends, *, q: str | None, category: str | None, page: int,
                 page_size: int) -> Composed:
    composed = Composed()
    await asyncio.gather(
        _part(composed, "categories", backends.categories(), []),
        _part(composed, "products", backends.products(q=q, category=category, page=page,
                                                      page_size=page_size),
              {"items": [], "total": 0}))
    found = composed.get("products") or {}
    composed.parts["paging"] = Paging(page=page, page_size=page_size,
                                      total=int(found.get("total", 0)))
    await _with_stock(composed, backends)
    return composed


async def _with_stock(page: Composed, backends: Backends) -> None:
    """Availability of a page of products: one inventory call for all of them."""
    items = (page.get("products") or {}).get("items", [])
    await _part(page, "stock", backends.stock([str(p["sku"]) for p in items]), None)
    stock = page.get("stock")
    page.parts["availability"] = {str(p["id"]): availability_of(stock, str(p["sku"]))
                                  for p in items}


async def product_page(backends: Backends, product_id: str) -> Composed:
    """Catalog and inventory together. The product itself is required: UpstreamUnavailable
    from the catalog is raised (the page says the shop is unavailable); inventory's absence
    only makes availability unknown."""
    page = Composed()
    product = await backends.product(product_id)
    page.parts["product"] = product
    if product is None:
        return page
    await _part(page, "stock", backends.stock([str(product["sku"])]), None)
    page.parts["availability"] = availability_of(page.get("stock"), str(product["sku"]))
    return page


async def order_page(backends: Backends, token: str, order_id: str,
                     payment_method_id: str | None) -> Composed:
    """Orders, payments, shipping and the order history together. The order is required
    (None: not this customer's, or no such order); the others are parts."""
    page = Composed()
    order = await backends.order(token, order_id)
    page.parts["order"] = order
    if order is None:
        return page
    calls = [_part(page, "shipment", backends.shipment(token, order_id)),
             _part(page, "history", backends.history(token, order_id))]
    if payment_method_id:
        calls.append(_part(page, "payment_method",
                           backends.read_payment_method(token, payment_method_id)))
    await asyncio.gather(*calls)
    return page
