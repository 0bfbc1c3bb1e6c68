"""Orders use cases (HTTP). Each takes a unit of work and opens it itself.

Placing an order validates everything before writing anything (the address and the prices
with the replicas of identity and catalog kept here, or with identity and catalog for what
the replicas lack; the payment method with its replica, or with payments the first time an
order names it, ADR 0041); then one transaction inserts the order, stages OrderPlaced and
starts the saga (its first command staged in the outbox). What identity, catalog and payments
answered then fills the replicas, in a transaction of its own (ADR 0036).

A card number never goes further than this module: an order placed with ``card_number`` has
its card exchanged for a payment method (payments vaults it with the provider) before
anything is stored, staged or logged, and the saga carries only the payment method's id and
the card's last four digits.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from chassis.auth import Principal
from chassis.clock import utc_now
from chassis.db import UnitOfWork, violated_constraint
from chassis.errors import Conflict, NotFound, Unprocessable
from chassis.saga import SagaEngine, history
from sqlalchemy.exc import IntegrityError

from orders.adapters.replica import (
    AddressReplica,
    PaymentMethodReplica,
    ProductReplica,
    read_for_placement,
    storable_address,
    storable_method,
)
from orders.adapters.repository import IDEMPOTENCY_CONSTRAINT, OrdersRepository
from orders.adapters.upstream import PaymentMethodRef, Product, Upstreams, canonical_uuid
from orders.domain.commands import PlaceOrder
from orders.domain.model import (
    APPROVED,
    CURRENCY,
    Order,
    OrderError,
    OrderLine,
    check_items,
    format_amount,
    request_fingerprint,
)
from orders.metrics import ReplicaLookups
from orders.service_layer import cancellation, events
from orders.service_layer.admission import Admission
from orders.service_layer.saga import CARD_LAST4_KEY, ORDER, PAYMENT_METHOD_KEY

log = structlog.get_logger("orders")


@dataclass(frozen=True, slots=True)
class Placed:
    order: Order
    created: bool  # False: a repeat of an earlier request, answered the same way


def _same_request(found: tuple[Order, str], fingerprint: str) -> Placed:
    order, known_hash = found
    if known_hash != fingerprint:
        raise Conflict("this Idempotency-Key was used for another request")
    return Placed(order, created=False)


async def _first_error(*aws: Any) -> list[Any]:
    """Await in parallel; raise the first failure only after all are done (none is left
    running behind the request)."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return list(results)


def _tokenize_key(idempotency_key: str, fingerprint: str) -> str:
    """The Idempotency-Key of the card's exchange at payments: every retry of this request
    (and every concurrent duplicate) gets the one payment method; another request under the
    same order key is another exchange. Payments scopes keys per customer."""
    return "order-" + hashlib.sha256(f"{idempotency_key}\n{fingerprint}".encode()).hexdigest()


async def place_order(uow: UnitOfWork, upstreams: Upstreams, engine: SagaEngine,
                      principal: Principal, command: PlaceOrder, *, idempotency_key: str,
                      authorization: str | None, admission: Admission | None = None,
                      card_key: bytes | None = None,
                      lookups: ReplicaLookups | None = None) -> Placed:
    fingerprint = request_fingerprint(command, card_key)
    try:
        items: list[tuple[str, int]] | None = check_items(
            (i.product_id, i.quantity) for i in command.items)
        bad_items = None
    except OrderError as exc:  # told after the key's check, as before the replica was read
        items, bad_items = None, exc
    canonical = {p: canonical_uuid(p) for p, _ in items or ()}
    # Only the caller's own address is looked up: the replica is keyed by its owner.
    address_key = canonical_uuid(command.shipping_address_id)
    method_id = command.payment.payment_method_id
    # One read alone (no BEGIN, no ROLLBACK: ADR 0049; one round trip for the key and the
    # three replicas: ADR 0055); a retry is answered without asking identity or catalog.
    async with uow.reading():
        kept = await read_for_placement(
            uow.session, principal.subject, idempotency_key,
            (c for c in canonical.values() if c is not None), address_key, method_id)
        found = await OrdersRepository(uow.session).by_idempotency_key(
            principal.subject, idempotency_key) if kept.key_used else None
    if found is not None:
        return _same_request(found, fingerprint)
    held, kept_address, kept_method = kept.products, kept.address, kept.method
    if admission is not None:
        admission.admit()  # before identity and catalog are asked anything
    if bad_items is not None:
        raise Unprocessable(str(bad_items), reason=bad_items.reason) from bad_items
    assert items is not None

    payment = command.payment
    # Prices from the replica; the catalog is called only for the products it lacks (ADR 0036).
    missing = [p for p, _ in items if canonical[p] not in held]
    if lookups is not None:
        lookups.count("product", hits=len(items) - len(missing), misses=len(missing))
        lookups.count("address", hits=int(kept_address is not None),
                      misses=int(kept_address is None))
        if method_id:
            lookups.count("payment_method", hits=int(kept_method is not None),
                          misses=int(kept_method is None))
    asked_at = utc_now()  # what identity answers is the address as of (at least) now
    address, fetched, method = await _first_error(
        upstreams.address(principal.subject, command.shipping_address_id, authorization)
        if kept_address is None else _value(kept_address),
        upstreams.products(missing) if missing else _no_products(),
        _value(kept_method) if kept_method is not None else
        upstreams.payment_method(method_id, authorization) if method_id else _none())
    if address is None:
        raise Unprocessable("unknown address", reason="unknown_address")
    if method_id and method is None:
        raise Unprocessable("unknown payment method", reason="unknown_payment_method")
    lines = []
    for product_id, quantity in items:
        kept = held.get(canonical[product_id] or "")
        product = kept.product if kept is not None else fetched[product_id]
        if product is None:
            raise Unprocessable(f"unknown product {product_id}", reason="unknown_product")
        if not product.active or product.currency != CURRENCY:
            raise Unprocessable(f"product {product_id} cannot be ordered",
                                reason="product_unavailable")
        lines.append(OrderLine(product_id, product.sku, product.name, quantity, product.price))
    # What the catalog answered fills the replica once the order is placed.
    fill = sorted({p.id: p for p in fetched.values()
                   if p is not None and p.version is not None}.values(), key=lambda p: p.id)

    if method is None:  # a card: exchanged now, after everything else was found valid
        assert payment.card_number is not None  # a PaymentChoice holds one of the two
        method = await upstreams.tokenize(
            payment.card_number, authorization=authorization,
            idempotency_key=_tokenize_key(idempotency_key, fingerprint))

    order = Order.place(str(uuid.uuid4()), principal.subject, lines,
                        shipping_address_id=command.shipping_address_id,
                        customer_email=principal.email)
    try:
        # Nothing here reads: the order, its OrderPlaced, the saga and its first command go
        # out at commit as one statement, alone (ADR 0055).
        async with uow:
            await OrdersRepository(uow.session).add(order, idempotency_key=idempotency_key,
                                                    request_hash=fingerprint)
            await events.order_placed(uow.session, order, causation_id=None)
            # The saga's history never shows the payment method (ORDER.secret_keys).
            await engine.start(uow.session, ORDER, uuid.UUID(order.id),
                               saga_data(order, address=address, payment_method=method))
            await uow.commit()
    except IntegrityError as exc:
        if violated_constraint(exc) != IDEMPOTENCY_CONSTRAINT:
            raise
        # A concurrent identical request won the insert, and this one wrote nothing: answer
        # as it did.
        async with uow.reading():
            again = await OrdersRepository(uow.session).by_idempotency_key(
                principal.subject, idempotency_key)
        assert again is not None  # the conflicting row is committed and never deleted
        return _same_request(again, fingerprint)
    log.info("order_placed", order_id=order.id, customer_id=order.customer_id,
             total=format_amount(order.total), lines=len(order.lines))
    address_fill = address if kept_address is None and address_key is not None and \
        storable_address(address) else None
    # Payments also answers an admin for someone else's method: only the owner's answer is kept.
    method_fill = method if method_id and kept_method is None and not principal.is_admin \
        and storable_method(method) else None
    if fill or address_fill is not None or method_fill is not None:
        await _fill_replicas(uow, fill, principal.subject, address_key, address_fill,
                             method_fill, products_at=order.created_at, address_at=asked_at)
    return Placed(order, created=True)


async def _fill_replicas(uow: UnitOfWork, products: list[Product], customer_id: str,
                         address_id: str | None, address: dict[str, Any] | None,
                         method: PaymentMethodRef | None, *,
                         products_at: datetime, address_at: datetime) -> None:
    """Keep what catalog, identity and payments answered, in a transaction of its own after the
    order's: the order never waits on (or deadlocks with) the replica consumers' row locks,
    and a fill that fails costs only the next order a call again."""
    try:
        async with uow:
            replica = ProductReplica(uow.session)
            for product in products:  # sorted by id: concurrent fills lock rows in one order
                assert product.version is not None
                await replica.put(product, version=product.version, changed_at=products_at)
            if address is not None and address_id is not None:
                await AddressReplica(uow.session).put(customer_id, address_id, address,
                                                      changed_at=address_at)
            if method is not None:
                await PaymentMethodReplica(uow.session).put(customer_id, method)
            await uow.commit()
    except Exception as exc:  # the order is placed: the fill is only a cache
        log.warning("replica_fill_failed", error=type(exc).__name__)


async def _none() -> None:
    return None


async def _no_products() -> dict[str, Product | None]:
    return {}


async def _value(value: Any) -> Any:
    return value


def saga_data(order: Order, *, address: dict[str, Any],
              payment_method: PaymentMethodRef) -> dict[str, Any]:
    """What the saga's steps need, and nothing more: the payment method, never a card."""
    return {"order_id": order.id, "customer_id": order.customer_id,
            "lines": [{"sku": li.sku, "quantity": li.quantity} for li in order.lines],
            "amount": format_amount(order.total), "currency": order.currency,
            PAYMENT_METHOD_KEY: payment_method.id, CARD_LAST4_KEY: payment_method.last4,
            "address": address}


async def get_order(uow: UnitOfWork, principal: Principal, order_id: str) -> Order:
    """Another customer's order is a 404, not a 403: its existence is not told either."""
    async with uow.reading():
        found = await OrdersRepository(uow.session).get(order_id)
    if found is None or not principal.can_act_for(found.customer_id):
        raise NotFound(f"no order {order_id}")
    return found


async def list_orders(uow: UnitOfWork, principal: Principal, *, status: str | None,
                      limit: int) -> list[Order]:
    customer = None if principal.is_admin else principal.subject
    async with uow:
        return await OrdersRepository(uow.session).listing(customer_id=customer, status=status,
                                                           limit=limit)


async def saga_history(uow: UnitOfWork, principal: Principal, order_id: str) -> dict[str, Any]:
    order = await get_order(uow, principal, order_id)
    async with uow:
        found = await history(uow.session, uuid.UUID(order.id),
                              secret_keys=ORDER.secret_keys)
    if found is None:
        raise NotFound(f"no saga for order {order_id}")
    return found.to_dict()


async def request_cancel(uow: UnitOfWork, principal: Principal, order_id: str,
                         engine: SagaEngine) -> Order:
    """Cancel an order: recorded now, applied later (see the domain). A PENDING order is
    cancelled when its saga ends; for an APPROVED one, shipping is asked to cancel the
    shipment in the same transaction, and its answer decides."""
    async with uow:
        repo = OrdersRepository(uow.session)
        order = await repo.get(order_id, for_update=True)
        if order is None or not principal.can_act_for(order.customer_id):
            raise NotFound(f"no order {order_id}")
        try:
            changed = order.request_cancel(engine.now())
        except OrderError as exc:
            raise Conflict(str(exc), reason=exc.reason) from exc
        if changed:
            await repo.save(order)
            if order.status == APPROVED:
                await cancellation.ask_to_cancel_shipment(uow.session, order, engine.now())
            await uow.commit()
            log.info("order_cancel_requested", order_id=order.id, status=order.status)
    return order
