"""The anti-corruption layer's translations: legacy requests answered from the services, in
the legacy shapes its clients know. Catalog reads only so far (``Capability.translated``).

Legacy                                 Services
GET /shop/products?page&page_size      GET /api/catalog/products?page&page_size&q&category=<slug>
    &q&category=<int>                  + GET /api/inventory/stock?sku=... (one call per page)
GET /shop/products/<int>               GET /api/catalog/products/<uuid> + its stock
GET /shop/categories                   GET /api/catalog/categories

Shapes: integer ids ⇄ UUIDs (``ids``), category ``{id, name}`` ⇄ a slug, ``active`` ⇄
``status``, ``in_stock`` (legacy: on hand) ⇄ inventory's ``on_hand``, money amounts with two
decimals ⇄ the currency's own (``"12900.00"`` ⇄ ``"12900"``); the catalog's version and
timestamps have no legacy counterpart and are dropped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from mercato.migration import ids


@dataclass(frozen=True)
class Answer:
    """One side's answer: HTTP status and JSON body, or an error (no answer at all)."""

    status: int
    body: Any = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or self.status >= 500


Fetch = Callable[[str, Mapping[str, str | list[str]]], Awaitable[Answer]]


class NotTranslated(Exception):
    """The request has no services counterpart (yet): answered 501 by the ACL."""


def problem(status: int, title: str, detail: str) -> Answer:
    return Answer(status, {"type": "about:blank", "title": title, "status": status,
                           "detail": detail})


def _int(query: Mapping[str, str], name: str, default: int | None, low: int,
         high: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be {low}..{high}, not {value}")
    return value


def legacy_money(money: Mapping[str, Any]) -> dict[str, str]:
    """The legacy shape: always two decimals."""
    try:
        amount = Decimal(str(money["amount"]))
    except (KeyError, InvalidOperation):
        return dict(money)
    return {"amount": f"{amount:.2f}", "currency": str(money.get("currency", ""))}


def legacy_product(p: Mapping[str, Any], categories: Mapping[str, Mapping[str, Any]],
                   on_hand: Mapping[str, int]) -> dict[str, Any]:
    cat = categories.get(str(p.get("category")), {})
    return {"id": ids.legacy_id("products", str(p["id"])), "sku": p["sku"], "name": p["name"],
            "description": p.get("description", ""), "price": legacy_money(p["price"]),
            "active": p.get("status") == "active",
            "category": {"id": cat.get("legacy_id"), "name": cat.get("name")},
            "in_stock": on_hand.get(str(p["sku"]), 0)}


async def _categories(fetch: Fetch) -> tuple[Answer, dict[str, dict[str, Any]]]:
    """The catalog's categories by slug, each with its legacy id (None if born in the
    services)."""
    got = await fetch("/api/catalog/categories", {})
    if got.status != 200 or not isinstance(got.body, dict):
        return got, {}
    return got, {c["slug"]: {"legacy_id": ids.legacy_id("categories", c["id"]),
                             "name": c["name"], "id": c["id"]}
                 for c in got.body.get("items", [])}


async def _stock(fetch: Fetch, skus: list[str]) -> tuple[Answer | None, dict[str, int]]:
    if not skus:
        return None, {}
    got = await fetch("/api/inventory/stock", {"sku": skus})
    if got.status != 200 or not isinstance(got.body, dict):
        return got, {}
    return None, {s["sku"]: int(s["on_hand"]) for s in got.body.get("items", [])}


def _upstream_failure(got: Answer) -> Answer:
    if got.error is not None or got.status >= 500:
        return problem(502, "Bad Gateway", f"the services could not answer "
                       f"({got.error or got.status})")
    return got  # a 4xx of theirs is the client's problem in either shape


async def answer(method: str, path: str, query: Mapping[str, str], fetch: Fetch) -> Answer:
    """The legacy answer to a legacy request, built from the services' answers."""
    if method not in ("GET", "HEAD"):
        raise NotTranslated(f"{method} {path}")
    parts = [p for p in path.split("/") if p]
    try:
        if parts == ["shop", "categories"]:
            return await _list_categories(fetch)
        if parts == ["shop", "products"]:
            return await _list_products(query, fetch)
        if len(parts) == 3 and parts[:2] == ["shop", "products"]:
            return await _one_product(parts[2], fetch)
    except ValueError as exc:
        return problem(422, "Unprocessable Entity", str(exc))
    raise NotTranslated(f"{method} {path}")


async def _list_categories(fetch: Fetch) -> Answer:
    got, by_slug = await _categories(fetch)
    if got.status != 200:
        return _upstream_failure(got)
    items = [{"id": c["legacy_id"], "name": c["name"], "parent_id": None}
             for c in by_slug.values()]
    return Answer(200, sorted(items, key=lambda c: (c["name"], c["id"] or 0)))


async def _list_products(query: Mapping[str, str], fetch: Fetch) -> Answer:
    page = _int(query, "page", 1, 1, 100_000)
    size = _int(query, "page_size", 20, 1, 100)
    category = _int(query, "category", None, 1, 2**62)
    q = query.get("q")
    if q is not None and (len(q) > 100 or "\x00" in q):
        raise ValueError("q is at most 100 characters")
    got, by_slug = await _categories(fetch)
    if got.status != 200:
        return _upstream_failure(got)
    params: dict[str, str | list[str]] = {"page": str(page), "page_size": str(size)}
    if q:
        params["q"] = q
    if category is not None:
        slug = next((s for s, c in by_slug.items() if c["legacy_id"] == category), None)
        if slug is None:  # legacy answers an empty page for an unknown category too
            return Answer(200, {"items": [], "total": 0, "page": page, "page_size": size})
        params["category"] = slug
    got = await fetch("/api/catalog/products", params)
    if got.status != 200 or not isinstance(got.body, dict):
        return _upstream_failure(got)
    items = got.body.get("items", [])
    failed, on_hand = await _stock(fetch, [str(p["sku"]) for p in items])
    if failed is not None:
        return _upstream_failure(failed)
    return Answer(200, {"items": [legacy_product(p, by_slug, on_hand) for p in items],
                        "total": got.body.get("total", 0), "page": page, "page_size": size})


async def _one_product(raw_id: str, fetch: Fetch) -> Answer:
    try:
        legacy = int(raw_id)
    except ValueError:
        raise ValueError(f"a product id is an integer, not {raw_id!r}") from None
    if not 1 <= legacy <= ids.MAX_ID:
        return problem(404, "No such product", f"product {legacy} does not exist")
    got = await fetch(f"/api/catalog/products/{ids.services_id('products', legacy)}", {})
    if got.status == 404:
        return problem(404, "No such product", f"product {legacy} does not exist")
    if got.status != 200 or not isinstance(got.body, dict):
        return _upstream_failure(got)
    cats, by_slug = await _categories(fetch)
    if cats.status != 200:
        return _upstream_failure(cats)
    failed, on_hand = await _stock(fetch, [str(got.body["sku"])])
    if failed is not None:
        return _upstream_failure(failed)
    return Answer(200, legacy_product(got.body, by_slug, on_hand))
