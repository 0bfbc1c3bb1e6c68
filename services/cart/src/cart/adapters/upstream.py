"""Synchronous calls: catalog (a product's current price) and orders (placing the order).

Both go through the app's one chassis ``ServiceClient``: a timeout per attempt, a circuit
breaker and a bulkhead per target, retries for the catalog GET and for the order POST (it
carries an Idempotency-Key, so a retry cannot make a second order). What cannot be
answered raises ``UpstreamUnavailable`` (a 503 problem with Retry-After).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from chassis.http_client import ServiceClient, UpstreamUnavailable


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    sku: str
    name: str
    price: Decimal
    currency: str
    active: bool


@dataclass(frozen=True, slots=True)
class OrdersAnswer:
    status: int
    document: dict[str, Any]


class Upstreams:
    def __init__(self, client: ServiceClient, *, catalog_url: str, orders_url: str,
                 orders_timeout_s: float | None = None) -> None:
        self.client = client
        self._catalog = catalog_url.rstrip("/")
        self._orders = orders_url.rstrip("/")
        self._orders_timeout_s = orders_timeout_s

    async def product(self, product_id: str) -> Product | None:
        """The product as the catalog sells it now, or None when the catalog does not know
        it (a 4xx: unknown, discontinued, not a product id)."""
        url = f"{self._catalog}/api/catalog/products/{quote(product_id, safe='')}"
        response = await self.client.get(url)
        if not response.ok:
            return None
        try:
            doc = response.json()
            price = Decimal(str(doc["price"]["amount"]))
            return Product(id=str(doc["id"]), sku=str(doc["sku"]), name=str(doc["name"]),
                           price=price, currency=str(doc["price"]["currency"]),
                           active=doc.get("status", "active") == "active")
        except (KeyError, TypeError, ValueError, InvalidOperation):
            return None

    async def place_order(self, body: dict[str, Any], *, authorization: str | None,
                          idempotency_key: str) -> OrdersAnswer:
        """POST /api/orders as the customer (their token is forwarded). A 2xx-4xx answer
        is returned as it came; one that is not JSON is an unavailability."""
        response = await self.client.post(f"{self._orders}/api/orders", json=body,
                                          authorization=authorization,
                                          idempotency_key=idempotency_key,
                                          timeout_s=self._orders_timeout_s)
        try:
            doc = response.json() if response.body else {}
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise UpstreamUnavailable("orders", f"answered {response.status} without JSON",
                                      status=response.status)
        return OrdersAnswer(response.status, doc)
