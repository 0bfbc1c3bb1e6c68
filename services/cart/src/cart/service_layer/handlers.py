"""Cart use cases. HTTP ones take a unit of work and open it themselves; the catalog-event
ones run in the consumer's transaction (the one that writes the inbox row).

Nothing is written before every check passed: a product is looked up in the catalog before
the cart is touched, and a checkout changes the cart only once orders accepted the order.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog
from chassis.auth import Principal
from chassis.db import UnitOfWork
from chassis.errors import Conflict, ProblemError, Unprocessable
from chassis.http_client import UpstreamUnavailable
from sqlalchemy.ext.asyncio import AsyncSession

from cart.adapters.repository import CartRepository, CheckoutRecord
from cart.adapters.upstream import Upstreams
from cart.domain.commands import CheckOutCart
from cart.domain.model import (
    CURRENCY,
    Cart,
    CartError,
    CartLine,
    check_quantity,
    order_idempotency_key,
    request_fingerprint,
)

log = structlog.get_logger("cart")


class OrdersRefused(ProblemError):
    """orders answered the checkout with a 4xx: passed on with its status and detail."""

    def __init__(self, status: int, doc: dict[str, Any]) -> None:
        extra = {k: doc[k] for k in ("reason", "errors") if k in doc}
        detail = doc.get("detail") if isinstance(doc.get("detail"), str) else None
        title = doc.get("title") if isinstance(doc.get("title"), str) else None
        super().__init__(detail or "the order was refused", title=title, **extra)
        self.status = status


@dataclass(frozen=True, slots=True)
class Checkout:
    order_id: str
    status: str
    created: bool  # False: a repeat of an earlier checkout, answered the same way


def _unprocessable(exc: CartError) -> Unprocessable:
    return Unprocessable(str(exc), reason=exc.reason)


async def get_cart(uow: UnitOfWork, principal: Principal) -> Cart:
    """The caller's own cart (empty if they never added anything): keyed by the token's
    subject, so no one can address another customer's cart."""
    async with uow:
        return await CartRepository(uow.session).get(principal.subject)


async def set_item(uow: UnitOfWork, upstreams: Upstreams, principal: Principal,
                   product_id: str, quantity: int) -> Cart:
    """Add the product or set its quantity, at the catalog's current price."""
    try:
        check_quantity(quantity)
    except CartError as exc:
        raise _unprocessable(exc) from exc
    product = await upstreams.product(product_id)  # 503 when the catalog cannot answer
    if product is None:
        raise Unprocessable(f"unknown product {product_id}", reason="unknown_product")
    if not product.active or product.currency != CURRENCY:
        raise Unprocessable(f"product {product_id} cannot be ordered",
                            reason="product_unavailable")
    line = CartLine(product_id=product_id, sku=product.sku, name=product.name,
                    quantity=quantity, unit_price=product.price, currency=product.currency)
    async with uow:
        repo = CartRepository(uow.session)
        await repo.lock(principal.subject)
        try:
            (await repo.get(principal.subject)).check_room_for(product_id)
        except CartError as exc:
            raise _unprocessable(exc) from exc
        await repo.put_line(principal.subject, line)
        cart = await repo.get(principal.subject)
        await uow.commit()
    log.info("cart_item_set", customer_id=principal.subject, product_id=product_id,
             quantity=quantity)
    return cart


async def remove_item(uow: UnitOfWork, principal: Principal, product_id: str) -> bool:
    """Remove the product from the caller's cart; False if it was not there (the API
    answers 204 either way: removing is idempotent)."""
    async with uow:
        removed = await CartRepository(uow.session).remove_line(principal.subject, product_id)
        await uow.commit()
    return removed


def _answer(record: CheckoutRecord, fingerprint: str) -> Checkout:
    if record.request_hash != fingerprint:
        raise Conflict("this Idempotency-Key was used for another checkout")
    return Checkout(record.order_id, record.status, created=False)


async def checkout(uow: UnitOfWork, upstreams: Upstreams, principal: Principal,
                   command: CheckOutCart, *, idempotency_key: str,
                   authorization: str | None) -> Checkout:
    """Turn the caller's cart into an order, once per (customer, Idempotency-Key).

    orders dedupes per (customer, key) itself, and the key sent to it is derived from the
    caller's, so concurrent or retried checkouts all get the one order. Once orders accepted
    it, the ordered lines leave the cart and (customer, key) -> order is recorded in one
    transaction, so a retry after that answers the same order although the cart is empty.
    """
    fingerprint = request_fingerprint(command)
    async with uow:
        repo = CartRepository(uow.session)
        # The cart first, then the record: a concurrent checkout that emptied the cart has
        # committed its record by then (both in one transaction), so it is found.
        cart = await repo.get(principal.subject)
        found = await repo.checkout(principal.subject, idempotency_key)
    if found is not None:
        return _answer(found, fingerprint)
    try:
        items = cart.order_items()
    except CartError as exc:
        raise _unprocessable(exc) from exc

    answer = await upstreams.place_order(
        {"items": [{"product_id": p, "quantity": q} for p, q in items],
         "shipping_address_id": command.shipping_address_id,
         "payment": command.payment.as_json()},
        authorization=authorization, idempotency_key=order_idempotency_key(idempotency_key))
    if 400 <= answer.status < 500:
        raise OrdersRefused(answer.status, answer.document)
    order_id, status = answer.document.get("id"), answer.document.get("status", "PENDING")
    if not isinstance(order_id, str) or not order_id or not isinstance(status, str):
        raise UpstreamUnavailable("orders", f"answered {answer.status} without an order id",
                                  status=answer.status)

    async with uow:
        repo = CartRepository(uow.session)
        record = CheckoutRecord(order_id, status[:20], fingerprint)
        if not await repo.record_checkout(principal.subject, idempotency_key, record):
            # A concurrent identical checkout recorded it (and emptied the cart) first.
            again = await repo.checkout(principal.subject, idempotency_key)
            assert again is not None  # committed, and never deleted
            return _answer(again, fingerprint)
        removed = await repo.remove_ordered(principal.subject, items)
        await uow.commit()
    log.info("cart_checked_out", customer_id=principal.subject, order_id=order_id,
             lines=len(items), removed=removed)
    return Checkout(order_id, record.status, created=True)


# Catalog events (in the consumer's transaction).

async def reprice(session: AsyncSession, product_id: str, unit_price: Decimal,
                  currency: str) -> int:
    changed = await CartRepository(session).reprice(product_id, unit_price, currency)
    log.info("carts_repriced", product_id=product_id, carts=changed)
    return changed


async def rename(session: AsyncSession, product_id: str, sku: str, name: str) -> int:
    return await CartRepository(session).rename(product_id, sku, name)


async def discontinue(session: AsyncSession, product_id: str) -> int:
    changed = await CartRepository(session).mark_unavailable(product_id)
    log.info("cart_items_unavailable", product_id=product_id, carts=changed)
    return changed
