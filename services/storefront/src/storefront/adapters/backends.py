"""Calls from the BFF to the services, through the app's one chassis ``ServiceClient``
(registry discovery, a timeout per attempt, a circuit breaker and a bulkhead per service).

Each method returns the service's JSON. A 404 is ``None`` (a page shows "not found"); any
other 4xx raises ``Refused`` with the service's own words (a form shows them); what cannot
be answered raises the chassis' ``UpstreamUnavailable`` (a page marks that part missing).
Calls made for a customer carry their access token: every service checks it again, so the
BFF can never show a customer more than the services would give them.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from chassis.http_client import ServiceClient, ServiceResponse, UpstreamUnavailable


class Refused(Exception):
    """A service said no (4xx): ``detail`` is its problem's detail, shown to the person."""

    def __init__(self, service: str, status: int, detail: str, reason: str | None = None):
        super().__init__(f"{service} answered {status}: {detail}")
        self.service, self.status, self.detail, self.reason = service, status, detail, reason


@dataclass(frozen=True)
class Urls:
    identity: str = "http://identity"
    catalog: str = "http://catalog"
    inventory: str = "http://inventory"
    cart: str = "http://cart"
    orders: str = "http://orders"
    payments: str = "http://payments"
    shipping: str = "http://shipping"
    history: str = "http://order_history"


def _bearer(token: str | None) -> str | None:
    return f"Bearer {token}" if token else None


def _q(value: str) -> str:
    return quote(value, safe="")


MAX_CACHED = 2000
MAX_AGE = re.compile(r"max-age=(\d+)")


class Backends:
    def __init__(self, client: ServiceClient, urls: Urls, *,
                 orders_timeout_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.urls = urls
        self._orders_timeout_s = orders_timeout_s
        self._clock = clock
        # Public catalog reads, kept as long as the catalog's Cache-Control allows (10 s by
        # default): the same product and category documents are asked for by every page.
        self._cache: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    async def _public_get(self, service: str, url: str,
                          params: dict[str, str] | None = None) -> Any:
        key = url + ("?" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))
                     if params else "")
        hit = self._cache.get(key)
        now = self._clock()
        if hit is not None and hit[0] > now:
            return hit[1]
        response = await self.client.get(url, params=params)
        doc = self._answer(service, response)
        age = MAX_AGE.search(response.headers.get("Cache-Control", "")) \
            if "public" in response.headers.get("Cache-Control", "") else None
        if age and int(age.group(1)) > 0:
            self._cache[key] = (now + min(int(age.group(1)), 60), doc)
            self._cache.move_to_end(key)
            while len(self._cache) > MAX_CACHED:
                self._cache.popitem(last=False)
        return doc

    # -- plumbing ----------------------------------------------------------------------------

    @staticmethod
    def _answer(service: str, response: ServiceResponse, *,
                none_on_404: bool = True) -> Any:
        if response.status == 404 and none_on_404:
            return None
        if response.status >= 400:
            detail, reason = f"{service} refused the request ({response.status})", None
            try:
                doc = response.json()
                if isinstance(doc, dict):
                    detail = str(doc.get("detail") or doc.get("title") or detail)
                    reason = doc.get("reason")
            except ValueError:
                pass
            raise Refused(service, response.status, detail, reason)
        if not response.body:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise UpstreamUnavailable(service, f"answered {response.status} without JSON",
                                      status=response.status) from exc

    async def _get(self, service: str, url: str, *, token: str | None = None,
                   params: dict[str, str] | None = None) -> Any:
        response = await self.client.get(url, params=params, authorization=_bearer(token))
        return self._answer(service, response)

    # -- catalog -----------------------------------------------------------------------------

    async def products(self, *, q: str | None = None, category: str | None = None,
                       page: int = 1, page_size: int = 12) -> dict[str, Any]:
        params = {"page": str(page), "page_size": str(page_size)}
        if q:
            params["q"] = q
        if category:
            params["category"] = category
        found = await self._public_get("catalog", f"{self.urls.catalog}/api/catalog/products",
                                       params=params)
        return found or {"items": [], "total": 0, "page": page, "page_size": page_size}

    async def products_by_id(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Many products in one call (the catalog's ``ids`` filter): the GraphQL loader's
        batch. Unknown or discontinued ones are left out."""
        if not ids:
            return {}
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 100):
            chunk = ids[start:start + 100]
            page = await self._get("catalog", f"{self.urls.catalog}/api/catalog/products",
                                   params={"ids": ",".join(chunk),
                                           "page_size": str(len(chunk))})
            for item in (page or {}).get("items", []):
                found[str(item["id"])] = item
        return found

    async def product(self, product_id: str, *, fresh: bool = False) -> dict[str, Any] | None:
        """``fresh``: not from the cache (the back office edits what it shows)."""
        url = f"{self.urls.catalog}/api/catalog/products/{_q(product_id)}"
        if fresh:
            return await self._get("catalog", url)  # type: ignore[no-any-return]
        return await self._public_get("catalog", url)  # type: ignore[no-any-return]

    async def categories(self) -> list[dict[str, Any]]:
        found = await self._public_get("catalog",
                                       f"{self.urls.catalog}/api/catalog/categories")
        return list((found or {}).get("items", []))

    async def create_product(self, token: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.client.post(f"{self.urls.catalog}/api/catalog/products", json=body,
                                   authorization=_bearer(token))
        return self._answer("catalog", r, none_on_404=False)  # type: ignore[no-any-return]

    async def update_product(self, token: str, product_id: str,
                             body: dict[str, Any]) -> dict[str, Any]:
        r = await self.client.patch(f"{self.urls.catalog}/api/catalog/products/{_q(product_id)}",
                                    json=body, authorization=_bearer(token))
        return self._answer("catalog", r, none_on_404=False)  # type: ignore[no-any-return]

    async def discontinue_product(self, token: str, product_id: str) -> None:
        r = await self.client.delete(
            f"{self.urls.catalog}/api/catalog/products/{_q(product_id)}",
            authorization=_bearer(token))
        self._answer("catalog", r, none_on_404=False)

    # -- inventory ---------------------------------------------------------------------------

    async def stock(self, skus: list[str]) -> dict[str, dict[str, Any]]:
        """Stock of many SKUs in one call; SKUs inventory does not know are left out."""
        if not skus:
            return {}
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(skus), 100):
            chunk = skus[start:start + 100]
            response = await self.client.get(f"{self.urls.inventory}/api/inventory/stock",
                                              params=[("sku", s) for s in chunk])  # type: ignore[arg-type]
            for item in (self._answer("inventory", response) or {}).get("items", []):
                found[str(item["sku"])] = item
        return found

    async def set_stock(self, token: str, sku: str, on_hand: int) -> dict[str, Any]:
        r = await self.client.put(f"{self.urls.inventory}/api/inventory/stock/{_q(sku)}",
                                  json={"on_hand": on_hand}, authorization=_bearer(token))
        return self._answer("inventory", r, none_on_404=False)  # type: ignore[no-any-return]

    # -- cart --------------------------------------------------------------------------------

    async def cart(self, token: str) -> dict[str, Any]:
        return await self._get("cart", f"{self.urls.cart}/api/cart",  # type: ignore[no-any-return]
                               token=token) or {"items": [], "total": None}

    async def set_cart_item(self, token: str, product_id: str, quantity: int) -> dict[str, Any]:
        r = await self.client.put(f"{self.urls.cart}/api/cart/items/{_q(product_id)}",
                                  json={"quantity": quantity}, authorization=_bearer(token))
        return self._answer("cart", r, none_on_404=False)  # type: ignore[no-any-return]

    async def remove_cart_item(self, token: str, product_id: str) -> None:
        r = await self.client.delete(f"{self.urls.cart}/api/cart/items/{_q(product_id)}",
                                     authorization=_bearer(token))
        self._answer("cart", r, none_on_404=False)

    # -- identity (addresses; signing in is adapters.identity) --------------------------------

    async def addresses(self, token: str) -> list[dict[str, Any]]:
        found = await self._get("identity", f"{self.urls.identity}/api/identity/me/addresses",
                                token=token)
        return list((found or {}).get("items", []))

    async def add_address(self, token: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.client.post(f"{self.urls.identity}/api/identity/me/addresses",
                                   json=body, authorization=_bearer(token))
        return self._answer("identity", r, none_on_404=False)  # type: ignore[no-any-return]

    # -- payments ----------------------------------------------------------------------------

    async def payment_method(self, token: str, card_number: str) -> dict[str, Any]:
        """The card exchanged for a payment method: the card number goes to payments only
        and is kept nowhere here."""
        r = await self.client.post(f"{self.urls.payments}/api/payments/payment-methods",
                                   json={"card_number": card_number},
                                   authorization=_bearer(token))
        return self._answer("payments", r, none_on_404=False)  # type: ignore[no-any-return]

    async def read_payment_method(self, token: str, method_id: str) -> dict[str, Any] | None:
        return await self._get(  # type: ignore[no-any-return]
            "payments", f"{self.urls.payments}/api/payments/payment-methods/{_q(method_id)}",
            token=token)

    # -- orders ------------------------------------------------------------------------------

    async def place_order(self, token: str, body: dict[str, Any],
                          idempotency_key: str) -> dict[str, Any]:
        r = await self.client.post(f"{self.urls.orders}/api/orders", json=body,
                                   authorization=_bearer(token),
                                   idempotency_key=idempotency_key,
                                   timeout_s=self._orders_timeout_s)
        return self._answer("orders", r, none_on_404=False)  # type: ignore[no-any-return]

    async def orders(self, token: str) -> list[dict[str, Any]]:
        found = await self._get("orders", f"{self.urls.orders}/api/orders", token=token)
        if isinstance(found, dict):
            return list(found.get("items", []))
        return list(found or [])

    async def order(self, token: str, order_id: str) -> dict[str, Any] | None:
        return await self._get("orders",  # type: ignore[no-any-return]
                               f"{self.urls.orders}/api/orders/{_q(order_id)}", token=token)

    async def saga(self, token: str, order_id: str) -> dict[str, Any] | None:
        return await self._get("orders",  # type: ignore[no-any-return]
                               f"{self.urls.orders}/api/orders/{_q(order_id)}/saga",
                               token=token)

    async def cancel_order(self, token: str, order_id: str) -> dict[str, Any]:
        r = await self.client.post(f"{self.urls.orders}/api/orders/{_q(order_id)}/cancel",
                                   authorization=_bearer(token))
        return self._answer("orders", r, none_on_404=False)  # type: ignore[no-any-return]

    # -- shipping and the order history ---------------------------------------------------------

    async def shipment(self, token: str, order_id: str) -> dict[str, Any] | None:
        found = await self._get("shipping", f"{self.urls.shipping}/api/shipping/shipments",
                                token=token, params={"order_id": order_id})
        items = found.get("items", []) if isinstance(found, dict) else (found or [])
        return items[0] if items else None

    async def history(self, token: str, order_id: str) -> dict[str, Any] | None:
        return await self._get("order_history",  # type: ignore[no-any-return]
                               f"{self.urls.history}/api/history/orders/{_q(order_id)}",
                               token=token)
