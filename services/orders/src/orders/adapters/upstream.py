"""Synchronous reads from identity (the shipping address) and catalog (current prices).

Both go through the app's one chassis ``ServiceClient``: a timeout per attempt, retries for
these GETs, a circuit breaker and a bulkhead per target. What cannot be answered raises
``UpstreamUnavailable`` (a 503 problem with Retry-After); a 4xx answer means "no such thing"
for the caller.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from chassis.http_client import ServiceClient

ADDRESS_FIELDS = ("name", "line1", "line2", "city", "postal_code", "country", "phone")


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    sku: str
    name: str
    price: Decimal
    currency: str
    active: bool


class Upstreams:
    def __init__(self, client: ServiceClient, *, identity_url: str, catalog_url: str) -> None:
        self.client = client
        self._identity = identity_url.rstrip("/")
        self._catalog = catalog_url.rstrip("/")

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

    async def product(self, product_id: str) -> Product | None:
        url = f"{self._catalog}/api/catalog/products/{quote(product_id, safe='')}"
        response = await self.client.get(url)
        if not response.ok:
            return None
        doc = response.json()
        try:
            price = Decimal(str(doc["price"]["amount"]))
            return Product(id=str(doc["id"]), sku=str(doc["sku"]), name=str(doc["name"]),
                           price=price, currency=str(doc["price"]["currency"]),
                           active=doc.get("status", "active") == "active")
        except (KeyError, TypeError, InvalidOperation):
            return None

    async def products(self, product_ids: list[str]) -> dict[str, Product | None]:
        """Every product at once (in parallel); the first unavailability is raised."""
        found = await asyncio.gather(*(self.product(p) for p in product_ids))
        return dict(zip(product_ids, found, strict=True))
