"""Synchronous calls to identity (the shipping address), catalog (current prices) and
payments (the customer's payment method, or a card exchanged for one).

All go through the app's one chassis ``ServiceClient``: a timeout per attempt, retries for
GETs and for the POST that carries an Idempotency-Key, a circuit breaker and a bulkhead per
target. What cannot be answered raises ``UpstreamUnavailable`` (a 503 problem with
Retry-After); a 4xx answer to a read means "no such thing" for the caller.

An order's prices come from one catalog call whatever its size (``GET
/api/catalog/products?ids=...``): a call per line made a 33-line order meet the bulkhead
(32 calls in flight per target) on its own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from chassis.errors import Conflict, Unprocessable
from chassis.http_client import ServiceClient, UpstreamUnavailable

ADDRESS_FIELDS = ("name", "line1", "line2", "city", "postal_code", "country", "phone")


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    sku: str
    name: str
    price: Decimal
    currency: str
    active: bool
    # The catalog's version of the product (None from a catalog that does not say it): what
    # orders' replica of it is ordered by (ADR 0036).
    version: int | None = None


@dataclass(frozen=True, slots=True)
class PaymentMethodRef:
    """What the saga needs of the customer's card: payments' token and the last 4 digits."""

    id: str
    last4: str


class Upstreams:
    def __init__(self, client: ServiceClient, *, identity_url: str, catalog_url: str,
                 payments_url: str = "http://payments") -> None:
        self.client = client
        self._identity = identity_url.rstrip("/")
        self._catalog = catalog_url.rstrip("/")
        self._payments = payments_url.rstrip("/")

    async def address(self, customer_id: str, address_id: str,
                      authorization: str | None) -> dict[str, Any] | None:
        """The customer's address as ShippingAddress fields, or None when identity does
        not know it (for this customer). The caller's token is forwarded: identity checks
        that the address is the caller's own."""
        url = (f"{self._identity}/api/identity/users/{quote(customer_id, safe='')}"
               f"/addresses/{quote(address_id, safe='')}")
        response = await self.client.get(url, authorization=authorization)
        if not response.ok:
            return None
        doc = response.json()
        return {k: doc.get(k) for k in ADDRESS_FIELDS}

    async def products(self, product_ids: list[str]) -> dict[str, Product | None]:
        """Every product at once, in one catalog call; None for one the catalog does not sell
        (unknown, discontinued, or not a product id at all)."""
        found: dict[str, Product | None] = dict.fromkeys(product_ids)
        # The catalog's ids are UUIDs, which it answers in their canonical spelling.
        asked: dict[str, list[str]] = {}
        for product_id in product_ids:
            canonical = canonical_uuid(product_id)
            if canonical is not None:
                asked.setdefault(canonical, []).append(product_id)
        if not asked:
            return found
        response = await self.client.get(f"{self._catalog}/api/catalog/products",
                                         params={"ids": ",".join(asked)})
        if not response.ok:
            raise UpstreamUnavailable("catalog", f"answered {response.status} to a listing",
                                      status=response.status)
        try:
            items = response.json()["items"]
        except (KeyError, TypeError, ValueError) as exc:
            raise UpstreamUnavailable("catalog", "answered a listing without items") from exc
        for doc in items:
            product = _product(doc)
            for product_id in asked.get(product.id, []) if product is not None else []:
                found[product_id] = product
        return found

    async def payment_method(self, method_id: str,
                             authorization: str | None) -> PaymentMethodRef | None:
        """The caller's payment method, or None when payments does not know it as theirs
        (the caller's token is forwarded: payments answers 404 for another customer's)."""
        url = f"{self._payments}/api/payments/payment-methods/{quote(method_id, safe='')}"
        response = await self.client.get(url, authorization=authorization)
        if not response.ok:
            return None
        return _method(response.json())

    async def tokenize(self, card_number: str, *, authorization: str | None,
                       idempotency_key: str) -> PaymentMethodRef:
        """Exchange the caller's card for a payment method of theirs. The key makes a retry
        (ours, or the client's) the same payment method. Conflict when payments saw that key
        with another card; Unprocessable when the card is refused."""
        response = await self.client.post(f"{self._payments}/api/payments/payment-methods",
                                          json={"card_number": card_number},
                                          authorization=authorization,
                                          idempotency_key=idempotency_key)
        if response.status == 409:
            raise Conflict("this Idempotency-Key was used for another request")
        if not response.ok:
            raise Unprocessable("the card was refused", reason="invalid_card")
        method = _method(response.json())
        if method is None:
            raise UpstreamUnavailable("payments", "answered without a payment method")
        return method


def canonical_uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _product(doc: Any) -> Product | None:
    try:
        price = Decimal(str(doc["price"]["amount"]))
        version = doc.get("version")
        return Product(id=str(doc["id"]), sku=str(doc["sku"]), name=str(doc["name"]),
                       price=price, currency=str(doc["price"]["currency"]),
                       active=doc.get("status", "active") == "active",
                       version=int(version) if version is not None else None)
    except (KeyError, TypeError, ValueError, InvalidOperation):
        return None


def _method(doc: Any) -> PaymentMethodRef | None:
    try:
        return PaymentMethodRef(id=str(doc["id"]), last4=str(doc["last4"]))
    except (KeyError, TypeError):
        return None
