"""The ACL's translations for the cart, checkout and order history (ADR 0035).

Legacy                                    Services
GET    /shop/cart                         GET    /api/cart
PUT    /shop/cart/lines/<int> {quantity}  PUT    /api/cart/items/<uuid> {quantity}
DELETE /shop/cart/lines/<int>             DELETE /api/cart/items/<uuid>
POST   /shop/checkout {address_id,        POST /api/cart/checkout (from the cart) or
       card_number, items?} +             POST /api/orders ("buy now" items), the same
       Idempotency-Key                    Idempotency-Key; then GET /api/orders/<uuid> until
                                          the order is terminal (bounded)
GET    /shop/orders?page&page_size        the monolith's own list (it accepts the services'
                                          token) merged with GET /api/history/orders
GET    /shop/orders/<int>                 the monolith's order, or the services' one whose
                                          legacy id it is

Every function takes the customer's token and two ``Call``s (the services through the edge,
the monolith directly) and returns the legacy ``Answer``.

- The cart: a customer's monolith cart is moved into the services' cart on every cart
  request the ACL serves for them (``move_legacy_cart``): each line is set on the services
  to the larger of the two quantities, then removed from the monolith, so a move cut short
  and repeated adds nothing twice.
- Checkout: the legacy client expects a final answer; the services' order is asynchronous.
  The ACL waits for a terminal status up to ``wait_s``; an order still pending then is a
  503 with Retry-After: the client's retry with the same Idempotency-Key is the same order,
  answered once it is terminal.
- Ids: products and addresses by the id scheme (``ids``), addresses of the monolith's by
  its ``services_id``; a services-born order gets ``services_order_id``: an integer above
  every legacy id (``SERVICES_ORDER_BASE`` + 48 bits of its UUID), with ``services_id``
  beside it in the document.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from pydantic import Field, ValidationError

from mercato.migration import ids
from mercato.migration.translate import (
    NOT_SIGNED_IN,
    Answer,
    LegacyBody,
    _invalid,
    _upstream_failure,
    legacy_money,
    problem,
)

# Legacy order ids are a bigint sequence that will not reach 2**52 in this shop's life; a
# services-born order's legacy id is above it and below 2**53 (a JSON number every client
# reads exactly).
SERVICES_ORDER_BASE = 1 << 52
TERMINAL = frozenset({"APPROVED", "REJECTED", "CANCELLED"})
# How deep the merged history can be paged: both sides are read from their first page.
MAX_MERGED = 1000
SIDE_PAGE = 100


class Call(Protocol):
    """A call to one side with the customer's token: JSON in, ``Answer`` out."""

    async def __call__(self, method: str, path: str, *, token: str | None = None,
                       json_body: Any = None, params: Mapping[str, str] | None = None,
                       headers: Mapping[str, str] | None = None) -> Answer: ...


class CartLineIn(LegacyBody):
    quantity: int = Field(ge=1, le=99)


class ItemIn(LegacyBody):
    product_id: int = Field(ge=1, le=2**62)
    quantity: int = Field(ge=1, le=99)


class CheckoutIn(LegacyBody):
    address_id: int = Field(ge=1, le=2**62)
    card_number: str = Field(min_length=12, max_length=19, pattern=r"^[0-9]+$")
    items: list[ItemIn] | None = Field(default=None, min_length=1, max_length=50)


def from_cart(body: bytes) -> bool:
    """Is this a valid checkout of the cart (no "buy now" items)?"""
    try:
        return CheckoutIn.model_validate_json(body or b"null").items is None
    except ValidationError:
        return False


def services_order_id(order_uuid: str) -> int:
    """The legacy id of a services-born order: stable, an integer no legacy order has."""
    return SERVICES_ORDER_BASE + int(uuid.UUID(str(order_uuid)).hex[:12], 16)


def legacy_order_id(order_uuid: str) -> int:
    """A services order's legacy id: the monolith's own if it was born there (id scheme),
    else ``services_order_id``."""
    return ids.legacy_id("orders", order_uuid) or services_order_id(order_uuid)


def _product_uuid(raw: str) -> str | Answer:
    try:
        legacy = int(raw)
    except ValueError:
        return problem(422, "Invalid request", f"a product id is an integer, not {raw!r}")
    if not 1 <= legacy <= ids.MAX_ID:
        return problem(404, "Not found", f"{legacy} is not an id")
    return str(ids.services_id("products", legacy))


def _refused(got: Answer) -> Answer | None:
    if got.status == 401:
        return NOT_SIGNED_IN
    if got.error is not None or got.status >= 500:
        answer = _upstream_failure(got)
        if got.status == 503:  # the services' own "try again": kept, with its Retry-After
            return Answer(503, problem(503, "Service Unavailable", "try again shortly").body,
                          headers=got.headers or (("retry-after", "2"),))
        return answer
    return None


# -- the cart -------------------------------------------------------------------------------


def legacy_cart(cart: Mapping[str, Any]) -> dict[str, Any]:
    """The services' cart in the monolith's shape. A product born in the services has no
    legacy id until the sync writes it into the monolith: ``product_id`` is null for it."""
    currency = str(cart.get("currency", ""))
    total = cart.get("total") or {"amount": "0", "currency": currency}
    lines = [{"product_id": ids.legacy_id("products", str(i["product_id"])),
              "name": i["name"], "quantity": int(i["quantity"]),
              "unit_price": legacy_money(i["unit_price"])}
             for i in cart.get("items", [])]
    # Ordered as the monolith orders them (by product id).
    lines.sort(key=lambda line: (line["product_id"] is None, line["product_id"] or 0))
    return {"lines": lines, "total": legacy_money(total)}


async def move_legacy_cart(token: str, legacy_token: str, services: Call,
                           legacy: Call) -> tuple[int, Answer | None]:
    """Move the monolith's cart lines of this customer into the services' cart: (lines
    moved, an Answer if the move could not be done). A line the services refuse (a product
    not on the services yet) stays in the monolith's cart and is tried again next time."""
    theirs = await legacy("GET", "/shop/cart", token=legacy_token)
    if theirs.status != 200 or not isinstance(theirs.body, dict):
        return 0, _refused(theirs) or problem(502, "Bad Gateway",
                                              "the legacy shop could not show the cart")
    lines = [line for line in theirs.body.get("lines", []) if line.get("product_id")]
    if not lines:
        return 0, None
    ours = await services("GET", "/api/cart", token=token)
    if ours.status != 200 or not isinstance(ours.body, dict):
        return 0, _refused(ours) or _upstream_failure(ours)
    have = {str(i["product_id"]): int(i["quantity"]) for i in ours.body.get("items", [])}
    moved = 0
    for line in lines:
        product = str(ids.services_id("products", int(line["product_id"])))
        quantity = max(int(line["quantity"]), have.get(product, 0))
        if have.get(product) != quantity:
            put = await services("PUT", f"/api/cart/items/{product}", token=token,
                                 json_body={"quantity": quantity})
            if put.status == 422:
                continue  # not sold on the services (yet): kept at the monolith
            if put.status != 200:
                return moved, _refused(put) or _upstream_failure(put)
        gone = await legacy("DELETE", f"/shop/cart/lines/{line['product_id']}",
                            token=legacy_token)
        if gone.status != 200:
            return moved, _refused(gone) or problem(502, "Bad Gateway", "the legacy shop "
                                                    "could not hand over the cart")
        moved += 1
    return moved, None


async def cart_answer(method: str, path: str, body: bytes, token: str, services: Call
                      ) -> Answer:
    """The legacy answer to a cart request, from the services' cart."""
    parts = [p for p in path.split("/") if p]
    if parts == ["shop", "cart"]:
        if method not in ("GET", "HEAD"):
            return problem(405, "Method Not Allowed", "Method Not Allowed")
    elif len(parts) == 4 and parts[:3] == ["shop", "cart", "lines"]:
        if method not in ("PUT", "DELETE"):
            return problem(405, "Method Not Allowed", "Method Not Allowed")
        product = _product_uuid(parts[3])
        if isinstance(product, Answer):
            return product
        if method == "PUT":
            try:
                line = CartLineIn.model_validate_json(body or b"null")
            except ValidationError as exc:
                return _invalid(exc)
            got = await services("PUT", f"/api/cart/items/{product}", token=token,
                                 json_body={"quantity": line.quantity})
            if got.status == 422 and _code(got) in ("unknown_product", "product_unavailable"):
                return problem(404, "No such product", f"product {parts[3]} is not for sale")
            if got.status == 422:
                return problem(422, "Invalid request", _detail(got))
            if got.status != 200:
                return _refused(got) or _upstream_failure(got)
            return Answer(200, legacy_cart(got.body))
        got = await services("DELETE", f"/api/cart/items/{product}", token=token)
        if got.status != 204:
            return _refused(got) or _upstream_failure(got)
    else:
        return problem(404, "Not Found", "Not Found")
    got = await services("GET", "/api/cart", token=token)
    if got.status != 200 or not isinstance(got.body, dict):
        return _refused(got) or _upstream_failure(got)
    return Answer(200, legacy_cart(got.body))


def _code(got: Answer) -> str | None:
    if not isinstance(got.body, dict):
        return None
    for name in ("code", "reason", "error"):
        if isinstance(got.body.get(name), str):
            return str(got.body[name])
    kind = got.body.get("type")
    return str(kind).rsplit("/", 1)[-1] if isinstance(kind, str) else None


def _detail(got: Answer) -> str:
    detail = got.body.get("detail") if isinstance(got.body, dict) else None
    return str(detail or "the request is not valid")


# -- checkout -------------------------------------------------------------------------------

REJECTIONS = {  # the services' rejection reasons in the monolith's checkout errors
    "card_declined": (402, "Payment declined"),
    "insufficient_funds": (402, "Payment declined"),
    "insufficient_stock": (409, "Out of stock"),
    "invalid_address": (422, "No such address"),
}


def legacy_order(order: Mapping[str, Any], *, address_id: int | None,
                 customer_id: int | None, card_last4: str | None = None) -> dict[str, Any]:
    """A services order (``GET /api/orders/<id>``) in the monolith's order document."""
    status = legacy_status(str(order["status"]))
    return {"id": legacy_order_id(str(order["id"])), "services_id": str(order["id"]),
            "customer_id": customer_id, "status": status,
            "total": legacy_money(order["total"]), "address_id": address_id,
            "created_at": str(order["created_at"]),
            "lines": sorted(({"product_id": ids.legacy_id("products", str(i["product_id"])),
                              "quantity": int(i["quantity"]),
                              "unit_price": legacy_money(i["unit_price"])}
                             for i in order.get("items", [])),
                            key=lambda line: line["product_id"] or 0),
            "payment": {"status": "CAPTURED" if status == "PAID" else None,
                        "card_last4": card_last4},
            "shipment": {"status": "READY" if status == "PAID" else None,
                         "tracking_number": None}}


def legacy_status(status: str, shipment: str | None = None) -> str:
    """The services' order status in the monolith's vocabulary (PAID, SHIPPED, DELIVERED,
    CANCELLED). A rejected order is CANCELLED (the monolith never kept a failed checkout:
    its client got the error instead); a pending one is PENDING, the one word the monolith
    never said (an order it had not finished did not exist outside its transaction)."""
    if status == "APPROVED":
        return {"DISPATCHED": "SHIPPED", "IN_TRANSIT": "SHIPPED",
                "DELIVERED": "DELIVERED"}.get(shipment or "", "PAID")
    if status in ("REJECTED", "CANCELLED"):
        return "CANCELLED"
    return status


async def address_services_id(address_id: int, legacy_token: str, legacy: Call
                              ) -> str | Answer:
    """The services' id of a legacy address of the customer's: the monolith's
    ``addresses.services_id`` (which is the id scheme's for an address born there)."""
    got = await legacy("GET", "/shop/addresses", token=legacy_token)
    if got.status != 200 or not isinstance(got.body, list):
        return _refused(got) or problem(502, "Bad Gateway",
                                        "the legacy shop could not list the addresses")
    for a in got.body:
        if a.get("id") == address_id:
            return str(a.get("services_id") or ids.services_id("addresses", address_id))
    return problem(422, "No such address", f"address {address_id} is not one of yours")


async def checkout_answer(body: bytes, key: str | None, token: str, legacy_token: str,
                          services: Call, legacy: Call, *, wait_s: float = 8.0,
                          poll_s: float = 0.1,
                          clock: Callable[[], float] = time.monotonic,
                          sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                          received_at: datetime | None = None) -> Answer:
    """The legacy answer to ``POST /shop/checkout``, placed on the services."""
    if key is not None and not 1 <= len(key) <= 200:
        return problem(422, "Invalid request", "Idempotency-Key is 1-200 characters")
    try:
        req = CheckoutIn.model_validate_json(body or b"null")
    except ValidationError as exc:
        return _invalid(exc)
    # Without a key the monolith makes one up: the request is then not retry-safe there
    # either.
    key = key or str(uuid.uuid4())
    address = await address_services_id(req.address_id, legacy_token, legacy)
    if isinstance(address, Answer):
        return address
    payment = {"card_number": req.card_number}
    headers = {"idempotency-key": key}
    if req.items is None:
        placed = await services("POST", "/api/cart/checkout", token=token, headers=headers,
                                json_body={"shipping_address_id": address, "payment": payment})
        order_id = placed.body.get("order_id") if isinstance(placed.body, dict) else None
    else:
        merged: dict[int, int] = {}
        for i in req.items:
            merged[i.product_id] = merged.get(i.product_id, 0) + i.quantity
        placed = await services("POST", "/api/orders", token=token, headers=headers, json_body={
            "items": [{"product_id": str(ids.services_id("products", p)), "quantity": q}
                      for p, q in sorted(merged.items())],
            "shipping_address_id": address, "payment": payment})
        order_id = placed.body.get("id") if isinstance(placed.body, dict) else None
    if placed.status != 202 or not order_id:
        return _placing_refused(placed)
    deadline = clock() + wait_s
    while True:
        got = await services("GET", f"/api/orders/{order_id}", token=token)
        if got.status != 200 or not isinstance(got.body, dict):
            return _refused(got) or _upstream_failure(got)
        if got.body.get("status") in TERMINAL or clock() >= deadline:
            break
        await sleep(poll_s)
    order = got.body
    if order["status"] not in TERMINAL:
        return Answer(503, {**problem(503, "Order still being processed", (
            f"order {legacy_order_id(str(order_id))} was placed and is not finished yet; "
            "send the same request with the same Idempotency-Key for its outcome")).body,
            "order_id": legacy_order_id(str(order_id)), "services_id": str(order_id)},
            headers=(("retry-after", "2"),))
    if order["status"] != "APPROVED":
        status, title = REJECTIONS.get(str(order.get("reason")), (409, "Order not placed"))
        return Answer(status, {**problem(status, title, f"the order was not placed "
                                         f"({order.get('reason')}); nothing was charged").body,
                               "reason": order.get("reason")})
    doc = legacy_order(order, address_id=req.address_id, customer_id=_customer(token),
                       card_last4=req.card_number[-4:])
    replayed = received_at is not None and _parsed(str(order["created_at"])) < received_at
    return Answer(200 if replayed else 201, doc)


def checkout_outcome(got: Answer) -> str:
    """What a checkout answer says, for the ACL's counter."""
    if got.status in (200, 201):
        return "replayed" if got.status == 200 else "placed"
    if got.status == 503 and isinstance(got.body, dict) and "services_id" in got.body:
        return "pending"  # placed, not finished within the wait
    return {402: "declined", 409: "refused", 422: "invalid"}.get(
        got.status, "error" if got.failed else "refused")


def _placing_refused(got: Answer) -> Answer:
    code = _code(got)
    if got.status == 422:
        if code == "empty_cart":
            return problem(422, "Empty cart", "there is nothing to buy: add a product first")
        detail = _detail(got)
        if "address" in detail or code == "unknown_address":
            return problem(422, "No such address", detail)
        if code in ("unknown_product", "product_unavailable", "unavailable_items") \
                or "product" in detail:
            return problem(409, "Not for sale", detail)
        return problem(422, "Invalid request", detail)
    if got.status == 409:  # the same key with another body
        return problem(409, "Idempotency-Key reused", _detail(got))
    return _refused(got) or _upstream_failure(got)


def _customer(token: str) -> int | None:
    # The customer's legacy id from the token's subject (unverified: the services verified
    # it); None for an account born in the services.
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return ids.legacy_id("customers", str(claims["sub"]))
    except (IndexError, KeyError, ValueError, TypeError):
        return None


def _parsed(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


# -- the bridge: services cart, monolith checkout -------------------------------------------


async def items_from_services_cart(token: str, services: Call
                                   ) -> tuple[list[dict[str, int]], Answer | None]:
    """The services' cart as the monolith's checkout ``items`` (empty: nothing there)."""
    got = await services("GET", "/api/cart", token=token)
    if got.status != 200 or not isinstance(got.body, dict):
        return [], _refused(got) or _upstream_failure(got)
    items = []
    for i in got.body.get("items", []):
        if i.get("available") is False:
            continue  # the services' checkout refuses these; the monolith does not sell them
        legacy = ids.legacy_id("products", str(i["product_id"]))
        if legacy is None:
            return [], problem(409, "Not for sale", f"{i.get('name')} is not sold by this "
                               "shop yet")
        items.append({"product_id": legacy, "quantity": int(i["quantity"])})
    return items, None


async def empty_services_cart(token: str, order: Mapping[str, Any], services: Call) -> None:
    """The ordered products leave the services' cart (DELETE answers 204 for a line already
    gone, so a replay does nothing more)."""
    for line in order.get("lines", []):
        if line.get("product_id"):
            product = ids.services_id("products", int(line["product_id"]))
            await services("DELETE", f"/api/cart/items/{product}", token=token)


# -- order history --------------------------------------------------------------------------


def legacy_history_item(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of ``/api/history/orders`` in the monolith's order-list shape."""
    total = row.get("total") or {"amount": "0", "currency": ""}
    return {"id": legacy_order_id(str(row["id"])), "services_id": str(row["id"]),
            "status": legacy_status(str(row.get("status")), row.get("shipment_status")),
            "total": legacy_money(total),
            "created_at": str(row.get("placed_at") or row.get("last_event_at") or "")}


def legacy_history_order(row: Mapping[str, Any], customer_id: int | None) -> dict[str, Any]:
    """One ``/api/history/orders/<id>`` in the monolith's order document (the history's
    line prices are bare amounts in the order's currency)."""
    status = legacy_status(str(row.get("status")), row.get("shipment_status"))
    currency = str((row.get("total") or {}).get("currency", ""))
    return {**legacy_history_item(row), "customer_id": customer_id, "address_id": None,
            "lines": sorted(({"product_id": ids.legacy_id("products", str(i["product_id"])),
                              "quantity": int(i["quantity"]),
                              "unit_price": legacy_money(
                                  {"amount": i["unit_price"], "currency": currency}
                                  if not isinstance(i["unit_price"], Mapping)
                                  else i["unit_price"])}
                             for i in row.get("items") or []),
                            key=lambda line: line["product_id"] or 0),
            "payment": {"status": row.get("payment_status"), "card_last4": None},
            "shipment": {"status": row.get("shipment_status") if status != "CANCELLED"
                         else None, "tracking_number": row.get("tracking_number")}}


def _page_args(query: Mapping[str, str]) -> tuple[int, int] | Answer:
    try:
        page, size = int(query.get("page", "1")), int(query.get("page_size", "20"))
    except ValueError:
        return problem(422, "Invalid request", "page and page_size are integers")
    if not (1 <= page <= 100_000 and 1 <= size <= 100):
        return problem(422, "Invalid request", "page is 1..100000, page_size 1..100")
    return page, size


async def _side(call: Call, path: str, token: str, want: int,
                shape: Callable[[Mapping[str, Any]], dict[str, Any]]
                ) -> tuple[list[dict[str, Any]], int, Answer | None]:
    """The newest ``want`` items of one side and its total."""
    items: list[dict[str, Any]] = []
    page, total = 1, 0
    while True:
        got = await call("GET", path, token=token,
                         params={"page": str(page), "page_size": str(SIDE_PAGE)})
        if got.status != 200 or not isinstance(got.body, dict):
            return [], 0, _refused(got) or _upstream_failure(got)
        total = int(got.body.get("total", 0))
        batch = got.body.get("items", [])
        items += [shape(i) for i in batch]
        if len(items) >= want or len(batch) < SIDE_PAGE or len(items) >= total:
            return items[:want], total, None
        page += 1


async def history_answer(method: str, path: str, query: Mapping[str, str], token: str,
                         legacy_token: str, services: Call, legacy: Call) -> Answer:
    """The legacy answer to an order-history request: both sides' orders, newest first."""
    if method not in ("GET", "HEAD"):
        return problem(405, "Method Not Allowed", "Method Not Allowed")
    parts = [p for p in path.split("/") if p]
    if parts == ["shop", "orders"]:
        args = _page_args(query)
        if isinstance(args, Answer):
            return args
        page, size = args
        want = page * size
        if want > MAX_MERGED:
            return problem(422, "Invalid request", f"the history is paged {MAX_MERGED} "
                           "orders deep while it is split between the two shops")
        old, old_total, failed = await _side(legacy, "/shop/orders", legacy_token, want, dict)
        if failed is not None:
            return failed
        new, new_total, failed = await _side(services, "/api/history/orders", token, want,
                                             legacy_history_item)
        if failed is not None:
            return failed
        # An order the monolith holds may reach the services' history by a sync under its
        # id-scheme UUID: shown once, as the monolith's.
        known = {o["id"] for o in old}
        new = [o for o in new if not (o["id"] < SERVICES_ORDER_BASE and o["id"] in known)]
        merged = sorted(old + new, key=lambda o: (_sortable(o["created_at"]), o["id"]),
                        reverse=True)
        return Answer(200, {"items": merged[(page - 1) * size:want],
                            "total": old_total + new_total, "page": page, "page_size": size})
    if len(parts) == 3 and parts[:2] == ["shop", "orders"]:
        try:
            wanted = int(parts[2])
        except ValueError:
            return problem(422, "Invalid request", f"an order id is an integer, not "
                           f"{parts[2]!r}")
        if wanted < SERVICES_ORDER_BASE:
            got = await legacy("GET", path, token=legacy_token)
            if got.error is not None or got.status >= 500:
                return problem(502, "Bad Gateway", "the legacy shop did not answer")
            return got
        return await _services_order(wanted, token, services)
    return problem(404, "Not Found", "Not Found")


async def _services_order(wanted: int, token: str, services: Call) -> Answer:
    # The id names 48 bits of the UUID: the customer's services history is searched for it
    # (the same depth as the merged list).
    page = 1
    while page * SIDE_PAGE <= MAX_MERGED:
        got = await services("GET", "/api/history/orders", token=token,
                             params={"page": str(page), "page_size": str(SIDE_PAGE)})
        if got.status != 200 or not isinstance(got.body, dict):
            return _refused(got) or _upstream_failure(got)
        batch = got.body.get("items", [])
        for row in batch:
            if services_order_id(str(row["id"])) == wanted:
                return Answer(200, legacy_history_order(row, _customer(token)))
        if len(batch) < SIDE_PAGE:
            break
        page += 1
    return problem(404, "No such order", f"order {wanted} does not exist")


def _sortable(stamp: str) -> float:
    try:
        return _parsed(stamp).timestamp()
    except ValueError:
        return 0.0
