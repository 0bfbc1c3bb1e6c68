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

The statements are built once (text): SQLAlchemy does not cache an INSERT ... ON CONFLICT.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from orders.adapters.orm import ID_LENGTH
from orders.adapters.upstream import PaymentMethodRef, Product


@dataclass(frozen=True, slots=True)
class ReplicaProduct:
    product: Product
    changed_at: datetime


MAX_AGE_S = 600.0

_GET = text(
    "SELECT id, sku, name, price, currency, active, changed_at, "
    "GREATEST(details_version, price_version, status_version) AS version "
    "FROM product_replica WHERE id IN :ids "
    "AND updated_at > now() - make_interval(secs => :max_age)",
).bindparams(bindparam("ids", expanding=True))

# A whole product (ProductCreated, or the catalog's answer to an order): each part is taken
# only if this version is newer than the part's (r: the row already there).
_UPSERT = text(
    "INSERT INTO product_replica AS r (id, sku, name, price, currency, active, details_version, "
    "price_version, status_version, changed_at) "
    "VALUES (:id, :sku, :name, :price, :currency, :active, :version, :version, :version, "
    ":changed_at) "
    "ON CONFLICT (id) DO UPDATE SET "
    "sku = CASE WHEN r.details_version < :version THEN :sku ELSE r.sku END, "
    "name = CASE WHEN r.details_version < :version THEN :name ELSE r.name END, "
    "details_version = GREATEST(r.details_version, :version), "
    "price = CASE WHEN r.price_version < :version THEN :price ELSE r.price END, "
    "currency = CASE WHEN r.price_version < :version THEN :currency ELSE r.currency END, "
    "price_version = GREATEST(r.price_version, :version), "
    "active = CASE WHEN r.status_version < :version THEN :active ELSE r.active END, "
    "status_version = GREATEST(r.status_version, :version), "
    # updated_at even when nothing is newer: the catalog confirmed the row just now.
    "changed_at = GREATEST(r.changed_at, :changed_at), updated_at = now()",
)

# ProductUpdated: new details; and, the catalog changing only active products (a discontinued
# one comes back with a ProductUpdated), the product is active at that version.
_DETAILS = text(
    "UPDATE product_replica SET "
    "sku = CASE WHEN details_version < :version THEN :sku ELSE sku END, "
    "name = CASE WHEN details_version < :version THEN :name ELSE name END, "
    "details_version = GREATEST(details_version, :version), "
    "active = CASE WHEN status_version < :version THEN true ELSE active END, "
    "status_version = GREATEST(status_version, :version), "
    "changed_at = GREATEST(changed_at, :changed_at), updated_at = now() "
    "WHERE id = :id AND (details_version < :version OR status_version < :version)",
)
_PRICE = text(
    "UPDATE product_replica SET price = :price, currency = :currency, price_version = :version, "
    "changed_at = GREATEST(changed_at, :changed_at), updated_at = now() "
    "WHERE id = :id AND price_version < :version",
)
_DISCONTINUED = text(
    "UPDATE product_replica SET active = false, status_version = :version, "
    "changed_at = GREATEST(changed_at, :changed_at), updated_at = now() "
    "WHERE id = :id AND status_version <= :version",
)
_DROP = text("DELETE FROM product_replica WHERE id = :id")


class ProductReplica:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, product_ids: Iterable[str]) -> dict[str, ReplicaProduct]:
        """The products held here and confirmed within MAX_AGE_S, by catalog id (canonical
        UUID spelling)."""
        ids = sorted(set(product_ids))
        if not ids:
            return {}
        rows = (await self.session.execute(_GET, {"ids": ids, "max_age": MAX_AGE_S})).all()
        return {r.id: ReplicaProduct(
            Product(id=r.id, sku=r.sku, name=r.name, price=Decimal(r.price),
                    currency=r.currency, active=r.active, version=int(r.version)),
            r.changed_at) for r in rows}

    async def put(self, product: Product, *, version: int, changed_at: datetime) -> None:
        """The whole product as the catalog had it at ``version``."""
        await self.session.execute(_UPSERT, {
            "id": product.id, "sku": product.sku, "name": product.name, "price": product.price,
            "currency": product.currency, "active": product.active, "version": version,
            "changed_at": changed_at})

    async def details(self, product_id: str, *, sku: str, name: str, version: int,
                      changed_at: datetime) -> None:
        await self.session.execute(_DETAILS, {"id": product_id, "sku": sku, "name": name,
                                               "version": version, "changed_at": changed_at})

    async def price(self, product_id: str, *, price: Decimal, currency: str, version: int,
                    changed_at: datetime) -> None:
        await self.session.execute(_PRICE, {"id": product_id, "price": price,
                                             "currency": currency, "version": version,
                                             "changed_at": changed_at})

    async def discontinued(self, product_id: str, *, version: int,
                           changed_at: datetime) -> None:
        await self.session.execute(_DISCONTINUED, {"id": product_id, "version": version,
                                                    "changed_at": changed_at})

    async def drop(self, product_id: str) -> None:
        await self.session.execute(_DROP, {"id": product_id})


# The customers' addresses (address_replica). Identity keeps no version per address: the
# event's occurred_at (identity's clock) orders them, and identity's answer to an order's call
# counts as of the moment the call was made (orders' clock; both run on synchronised clocks).
_GET_ADDRESS = text(
    "SELECT name, line1, line2, city, postal_code, country, phone FROM address_replica "
    "WHERE customer_id = :customer_id AND address_id = :address_id "
    "AND updated_at > now() - make_interval(secs => :max_age)",
)
_PUT_ADDRESS = text(
    "INSERT INTO address_replica AS r (customer_id, address_id, name, line1, line2, city, "
    "postal_code, country, phone, changed_at) VALUES (:customer_id, :address_id, :name, "
    ":line1, :line2, :city, :postal_code, :country, :phone, :changed_at) "
    "ON CONFLICT (customer_id, address_id) DO UPDATE SET "
    "name = :name, line1 = :line1, line2 = :line2, city = :city, postal_code = :postal_code, "
    "country = :country, phone = :phone, changed_at = :changed_at, updated_at = now() "
    "WHERE r.changed_at < :changed_at",
)
_DROP_ADDRESS = text("DELETE FROM address_replica "
                     "WHERE customer_id = :customer_id AND address_id = :address_id")
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

    async def get(self, customer_id: str, address_id: str) -> dict[str, str | None] | None:
        """The customer's own address (ShippingAddress fields), if held and confirmed
        within MAX_AGE_S; another customer's is never found."""
        row = (await self.session.execute(_GET_ADDRESS, {
            "customer_id": customer_id, "address_id": address_id,
            "max_age": MAX_AGE_S})).first()
        return dict(row._mapping) if row is not None else None

    async def put(self, customer_id: str, address_id: str, fields: dict[str, str | None], *,
                  changed_at: datetime) -> None:
        """The address as of ``changed_at``, unless a later state is held already."""
        await self.session.execute(_PUT_ADDRESS, {
            "customer_id": customer_id, "address_id": address_id,
            **{k: fields.get(k) for k in ADDRESS_COLUMNS}, "changed_at": changed_at})

    async def drop(self, customer_id: str, address_id: str) -> None:
        await self.session.execute(_DROP_ADDRESS, {"customer_id": customer_id,
                                                   "address_id": address_id})


# The customers' payment methods (ADR 0041). Payments never changes or removes a method (its
# API has no such route; payments' tests say so), so what it answered once holds for good:
# no version, no age. Filled only from payments' answer to the call an order makes when the
# method is not here, and only when the caller is the method's owner: keyed by the owner.
# Should a row ever be wrong, payments still checks the owner when it authorizes: the order
# is declined, no one else's card is charged.
_GET_METHOD = text("SELECT last4 FROM payment_method_replica "
                   "WHERE customer_id = :customer_id AND method_id = :method_id")
_PUT_METHOD = text("INSERT INTO payment_method_replica (customer_id, method_id, last4) "
                   "VALUES (:customer_id, :method_id, :last4) ON CONFLICT DO NOTHING")


def storable_method(method: PaymentMethodRef) -> bool:
    return 0 < len(method.id) <= ID_LENGTH and len(method.last4) == 4


class PaymentMethodReplica:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, customer_id: str, method_id: str) -> PaymentMethodRef | None:
        """The customer's own payment method, if an order of theirs named it before."""
        last4 = (await self.session.execute(_GET_METHOD, {
            "customer_id": customer_id, "method_id": method_id})).scalar()
        return PaymentMethodRef(id=method_id, last4=last4) if last4 is not None else None

    async def put(self, customer_id: str, method: PaymentMethodRef) -> None:
        await self.session.execute(_PUT_METHOD, {"customer_id": customer_id,
                                                  "method_id": method.id,
                                                  "last4": method.last4})
