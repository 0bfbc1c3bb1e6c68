"""The catalog's products and the customers' addresses as orders keeps them
(``product_replica`` and ``address_replica``, ADR 0036), and the payment methods their orders
named (``payment_method_replica``, ADR 0041).

Fed by the catalog's events (``entrypoints.consumers``) and by the answer of the catalog call
an order makes when a product is not here yet. Each catalog event carries part of a product,
so each part (details: sku and name; price: amount and currency; status: active or not) is
written only by a change newer than the one that last set it: the catalog's product version
orders them, whatever order the events arrive in. At one version, discontinued beats active
(a record replaced with a new name and status DISCONTINUED at once stages ProductUpdated and
ProductDiscontinued with the same version).

An event without a version (an older catalog) cannot be ordered against the rest: it drops
the product's row, and the next order asks the catalog again.

A row the catalog has not confirmed for ``MAX_AGE_S`` (no event applied, no call answered) is
not used: the next order asks the catalog again and refreshes it. That bounds how stale a
price can be when events stop arriving (a stalled consumer, a lost stream), at the cost of one
catalog call per product every ``MAX_AGE_S`` of orders.

Every statement here runs per order (the reads, the fill after it) or per replicated event (the
writes): fixed SQL text with ``$n`` parameters on the unit of work's asyncpg connection
(``chassis.db.driver_fetch``, ADR 0046's pattern), none of SQLAlchemy's execution path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from chassis.db import driver_execute, driver_fetch
from sqlalchemy.ext.asyncio import AsyncSession

from orders.adapters.orm import ID_LENGTH
from orders.adapters.upstream import PaymentMethodRef, Product


@dataclass(frozen=True, slots=True)
class ReplicaProduct:
    product: Product
    changed_at: datetime


MAX_AGE_S = 600.0

# A whole product (ProductCreated, or the catalog's answer to an order): each part is taken
# only if this version is newer than the part's (r: the row already there).
# $1 id, $2 sku, $3 name, $4 price, $5 currency, $6 active, $7 version, $8 changed_at.
_UPSERT = (
    "INSERT INTO product_replica AS r (id, sku, name, price, currency, active, details_version, "
    "price_version, status_version, changed_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7, $8) "
    "ON CONFLICT (id) DO UPDATE SET "
    "sku = CASE WHEN r.details_version < $7 THEN $2 ELSE r.sku END, "
    "name = CASE WHEN r.details_version < $7 THEN $3 ELSE r.name END, "
    "details_version = GREATEST(r.details_version, $7), "
    "price = CASE WHEN r.price_version < $7 THEN $4 ELSE r.price END, "
    "currency = CASE WHEN r.price_version < $7 THEN $5 ELSE r.currency END, "
    "price_version = GREATEST(r.price_version, $7), "
    "active = CASE WHEN r.status_version < $7 THEN $6 ELSE r.active END, "
    "status_version = GREATEST(r.status_version, $7), "
    # updated_at even when nothing is newer: the catalog confirmed the row just now.
    "changed_at = GREATEST(r.changed_at, $8), updated_at = now()"
)

# ProductUpdated: new details; and, the catalog changing only active products (a discontinued
# one comes back with a ProductUpdated), the product is active at that version.
# $1 id, $2 sku, $3 name, $4 version, $5 changed_at.
_DETAILS = (
    "UPDATE product_replica SET "
    "sku = CASE WHEN details_version < $4 THEN $2 ELSE sku END, "
    "name = CASE WHEN details_version < $4 THEN $3 ELSE name END, "
    "details_version = GREATEST(details_version, $4), "
    "active = CASE WHEN status_version < $4 THEN true ELSE active END, "
    "status_version = GREATEST(status_version, $4), "
    "changed_at = GREATEST(changed_at, $5), updated_at = now() "
    "WHERE id = $1 AND (details_version < $4 OR status_version < $4)"
)
# $1 id, $2 price, $3 currency, $4 version, $5 changed_at.
_PRICE = (
    "UPDATE product_replica SET price = $2, currency = $3, price_version = $4, "
    "changed_at = GREATEST(changed_at, $5), updated_at = now() "
    "WHERE id = $1 AND price_version < $4"
)
# $1 id, $2 version, $3 changed_at.
_DISCONTINUED = (
    "UPDATE product_replica SET active = false, status_version = $2, "
    "changed_at = GREATEST(changed_at, $3), updated_at = now() "
    "WHERE id = $1 AND status_version <= $2"
)
_DROP = "DELETE FROM product_replica WHERE id = $1"


class ProductReplica:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def put(self, product: Product, *, version: int, changed_at: datetime) -> None:
        """The whole product as the catalog had it at ``version``."""
        await driver_execute(self.session, _UPSERT, product.id, product.sku, product.name,
                             product.price, product.currency, product.active, version,
                             changed_at)

    async def details(self, product_id: str, *, sku: str, name: str, version: int,
                      changed_at: datetime) -> None:
        await driver_execute(self.session, _DETAILS, product_id, sku, name, version,
                             changed_at)

    async def price(self, product_id: str, *, price: Decimal, currency: str, version: int,
                    changed_at: datetime) -> None:
        await driver_execute(self.session, _PRICE, product_id, price, currency, version,
                             changed_at)

    async def discontinued(self, product_id: str, *, version: int,
                           changed_at: datetime) -> None:
        await driver_execute(self.session, _DISCONTINUED, product_id, version, changed_at)

    async def drop(self, product_id: str) -> None:
        await driver_execute(self.session, _DROP, product_id)


# The customers' addresses (address_replica). Identity keeps no version per address: the
# event's occurred_at (identity's clock) orders them, and identity's answer to an order's call
# counts as of the moment the call was made (orders' clock; both run on synchronised clocks).
# $1 customer_id, $2 address_id, $3-$9 ADDRESS_COLUMNS, $10 changed_at.
_PUT_ADDRESS = (
    "INSERT INTO address_replica AS r (customer_id, address_id, name, line1, line2, city, "
    "postal_code, country, phone, changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
    "ON CONFLICT (customer_id, address_id) DO UPDATE SET "
    "name = $3, line1 = $4, line2 = $5, city = $6, postal_code = $7, "
    "country = $8, phone = $9, changed_at = $10, updated_at = now() "
    "WHERE r.changed_at < $10"
)
_DROP_ADDRESS = "DELETE FROM address_replica WHERE customer_id = $1 AND address_id = $2"
ADDRESS_COLUMNS = ("name", "line1", "line2", "city", "postal_code", "country", "phone")
# identity's column sizes; line2 and phone may be empty, the rest may not.
ADDRESS_LIMITS = {"name": 200, "line1": 200, "line2": 200, "city": 100, "postal_code": 20,
                  "country": 2, "phone": 32}
ADDRESS_REQUIRED = ("name", "line1", "city", "postal_code", "country")


def storable_address(fields: dict[str, str | None]) -> bool:
    """Whether these fields make an address the replica can keep."""
    if not all(fields.get(k) for k in ADDRESS_REQUIRED):
        return False
    values = [(k, fields.get(k)) for k in ADDRESS_COLUMNS]
    return all(v is None or (isinstance(v, str) and len(v) <= ADDRESS_LIMITS[k])
               for k, v in values)


class AddressReplica:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def put(self, customer_id: str, address_id: str, fields: dict[str, str | None], *,
                  changed_at: datetime) -> None:
        """The address as of ``changed_at``, unless a later state is held already."""
        await driver_execute(self.session, _PUT_ADDRESS, customer_id, address_id,
                             *(fields.get(k) for k in ADDRESS_COLUMNS), changed_at)

    async def drop(self, customer_id: str, address_id: str) -> None:
        await driver_execute(self.session, _DROP_ADDRESS, customer_id, address_id)


# The customers' payment methods (ADR 0041). Payments never changes or removes a method (its
# API has no such route; payments' tests say so), so what it answered once holds for good:
# no version, no age. Filled only from payments' answer to the call an order makes when the
# method is not here, and only when the caller is the method's owner: keyed by the owner.
# Should a row ever be wrong, payments still checks the owner when it authorizes: the order
# is declined, no one else's card is charged.
_PUT_METHOD = ("INSERT INTO payment_method_replica (customer_id, method_id, last4) "
               "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")


def storable_method(method: PaymentMethodRef) -> bool:
    return 0 < len(method.id) <= ID_LENGTH and len(method.last4) == 4


class PaymentMethodReplica:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def put(self, customer_id: str, method: PaymentMethodRef) -> None:
        await driver_execute(self.session, _PUT_METHOD, customer_id, method.id, method.last4)


# -- what placing an order reads, in one round trip (ADR 0055) ---------------------------------
# Whether the customer used the order's key already, the products held (confirmed within
# MAX_AGE_S), the customer's own address (the same) and the payment method: four reads alone
# (ADR 0049) were four round trips. One statement, one row per thing found, each kind's
# columns in the shared ones (t1..t7: text). $1 customer_id, $2 idempotency key, $3 product
# ids, $4 address id (NULL: none), $5 method id (NULL: none), $6 max age (s).
_PLACEMENT = (
    "SELECT 'order' AS part, o.id::text AS id, NULL::text AS t1, NULL::text AS t2, "
    "NULL::text AS t3, NULL::text AS t4, NULL::text AS t5, NULL::text AS t6, NULL::text AS t7, "
    "NULL::numeric AS price, NULL::boolean AS active, NULL::timestamptz AS changed_at, "
    "NULL::bigint AS version "
    "FROM orders o WHERE o.customer_id = $1 AND o.idempotency_key = $2 "
    "UNION ALL "
    "SELECT 'product', p.id, p.sku, p.name, p.currency, NULL, NULL, NULL, NULL, p.price, "
    "p.active, p.changed_at, GREATEST(p.details_version, p.price_version, p.status_version) "
    "FROM product_replica p WHERE p.id = ANY($3::text[]) "
    "AND p.updated_at > now() - make_interval(secs => $6::float8) "
    "UNION ALL "
    "SELECT 'address', NULL, a.name, a.line1, a.line2, a.city, a.postal_code, a.country, "
    "a.phone, NULL, NULL, NULL, NULL "
    "FROM address_replica a WHERE a.customer_id = $1 AND a.address_id = $4::text "
    "AND a.updated_at > now() - make_interval(secs => $6::float8) "
    "UNION ALL "
    "SELECT 'method', NULL, m.last4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
    "NULL FROM payment_method_replica m WHERE m.customer_id = $1 AND m.method_id = $5::text"
)


@dataclass(frozen=True, slots=True)
class PlacementReads:
    """What the replicas hold for an order about to be placed."""

    key_used: bool  # an order of this customer has the key already (read it: a repeat)
    products: dict[str, ReplicaProduct]  # by catalog id (canonical UUID spelling)
    address: dict[str, str | None] | None  # the customer's own (ShippingAddress fields)
    method: PaymentMethodRef | None  # the customer's own, if an order of theirs named it


async def read_for_placement(session: AsyncSession, customer_id: str, idempotency_key: str,
                             product_ids: Iterable[str], address_id: str | None,
                             method_id: str | None) -> PlacementReads:
    rows = await driver_fetch(session, _PLACEMENT, customer_id, idempotency_key,
                              sorted(set(product_ids)), address_id, method_id,
                              float(MAX_AGE_S))
    products: dict[str, ReplicaProduct] = {}
    address: dict[str, str | None] | None = None
    method: PaymentMethodRef | None = None
    key_used = False
    for r in rows:
        part = r["part"]
        if part == "order":
            key_used = True
        elif part == "product":
            products[r["id"]] = ReplicaProduct(
                Product(id=r["id"], sku=r["t1"], name=r["t2"], price=Decimal(r["price"]),
                        currency=r["t3"], active=r["active"], version=int(r["version"])),
                r["changed_at"])
        elif part == "address":
            address = dict(zip(ADDRESS_COLUMNS, (r[f"t{i}"] for i in range(1, 8)), strict=True))
        elif part == "method" and method_id is not None:
            method = PaymentMethodRef(id=method_id, last4=r["t1"])
    return PlacementReads(key_used, products, address, method)
