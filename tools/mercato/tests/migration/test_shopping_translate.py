"""The ACL's cart, checkout and history translations (ADR 0035): legacy requests in, the calls
each side gets, legacy answers out. Both sides are recording stand-ins holding state here;
test_shopping_bridge.py runs the ACL against the real monolith."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from mercato.migration.ids import services_id
from mercato.migration.shopping import (
    SERVICES_ORDER_BASE,
    cart_answer,
    checkout_answer,
    checkout_outcome,
    empty_services_cart,
    history_answer,
    items_from_services_cart,
    legacy_cart,
    legacy_status,
    move_legacy_cart,
    services_order_id,
)
from mercato.migration.translate import Answer

P7, P8 = str(services_id("products", 7)), str(services_id("products", 8))
ADDRESS_UUID = str(uuid.uuid4())  # born in the services, recorded by the monolith


def krw(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "KRW"}


class Side:
    """Answers by (method, path) from a table or a function; records every call."""

    def __init__(self, answers: Mapping[tuple[str, str], Any] | None = None) -> None:
        self.answers: dict[tuple[str, str], Any] = dict(answers or {})
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, method: str, path: str, *, token: str | None = None,
                       json_body: Any = None, params: Mapping[str, str] | None = None,
                       headers: Mapping[str, str] | None = None) -> Answer:
        self.calls.append({"method": method, "path": path, "token": token, "json": json_body,
                           "params": dict(params or {}), "headers": dict(headers or {})})
        found = self.answers[(method, path)]
        return found(json_body, dict(params or {})) if callable(found) else found

    def paths(self, method: str | None = None) -> list[str]:
        return [c["path"] for c in self.calls if method in (None, c["method"])]


class Cart:
    """The services' cart as a dict of product UUID → quantity."""

    def __init__(self, lines: dict[str, int] | None = None) -> None:
        self.lines = dict(lines or {})

    def doc(self) -> dict[str, Any]:
        items = [{"product_id": p, "sku": f"SKU-{p[-2:]}", "name": f"Product {int(p[-12:], 16)}",
                  "quantity": q, "unit_price": krw(str(int(p[-12:], 16) * 1000)),
                  "subtotal": krw("0"), "available": True} for p, q in self.lines.items()]
        total = sum(int(p[-12:], 16) * 1000 * q for p, q in self.lines.items())
        return {"items": items, "total": krw(str(total)), "currency": "KRW"}

    def side(self, side: Side) -> Side:
        side.answers[("GET", "/api/cart")] = lambda _b, _p: Answer(200, self.doc())
        for p in (P7, P8):
            side.answers[("PUT", f"/api/cart/items/{p}")] = self._put(p)
            side.answers[("DELETE", f"/api/cart/items/{p}")] = self._delete(p)
        return side

    def _put(self, product: str) -> Any:
        def put(body: Any, _: Any) -> Answer:
            self.lines[product] = body["quantity"]
            return Answer(200, self.doc())
        return put

    def _delete(self, product: str) -> Any:
        def delete(_b: Any, _p: Any) -> Answer:
            self.lines.pop(product, None)
            return Answer(204)
        return delete


class LegacyCart:
    def __init__(self, lines: dict[int, int]) -> None:
        self.lines = dict(lines)

    def side(self, side: Side) -> Side:
        side.answers[("GET", "/shop/cart")] = lambda _b, _p: Answer(200, {
            "lines": [{"product_id": p, "name": f"Product {p}", "quantity": q,
                       "unit_price": krw(f"{p * 1000}.00")} for p, q in sorted(self.lines.items())],
            "total": krw("0.00")})
        for p in (7, 8):
            side.answers[("DELETE", f"/shop/cart/lines/{p}")] = self._delete(p)
        return side

    def _delete(self, product: int) -> Any:
        def delete(_b: Any, _p: Any) -> Answer:
            self.lines.pop(product, None)
            return Answer(200, {"lines": [], "total": krw("0.00")})
        return delete


# -- cart -------------------------------------------------------------------------------------


def test_the_services_cart_in_the_legacy_shape() -> None:
    doc = Cart({P8: 1, P7: 2}).doc()
    doc["items"].append({"product_id": str(uuid.uuid4()), "name": "New", "quantity": 1,
                         "unit_price": krw("500"), "available": True})
    got = legacy_cart(doc)
    assert got["lines"][:2] == [
        {"product_id": 7, "name": "Product 7", "quantity": 2, "unit_price": krw("7000.00")},
        {"product_id": 8, "name": "Product 8", "quantity": 1, "unit_price": krw("8000.00")}]
    # Born in the services: no legacy id yet.
    assert got["lines"][2]["product_id"] is None
    assert got["total"] == krw("22000.00")


async def test_put_get_and_delete_lines_answer_the_legacy_cart() -> None:
    cart = Cart()
    services = cart.side(Side())
    got = await cart_answer("PUT", "/shop/cart/lines/7", b'{"quantity": 3}', "jwt", services)
    assert got.status == 200 and got.body["lines"][0]["product_id"] == 7
    assert services.calls[0] == {"method": "PUT", "path": f"/api/cart/items/{P7}",
                                 "token": "jwt", "json": {"quantity": 3}, "params": {},
                                 "headers": {}}
    got = await cart_answer("GET", "/shop/cart", b"", "jwt", services)
    assert got == Answer(200, {"lines": [{"product_id": 7, "name": "Product 7", "quantity": 3,
                                          "unit_price": krw("7000.00")}],
                               "total": krw("21000.00")})
    got = await cart_answer("DELETE", "/shop/cart/lines/7", b"", "jwt", services)
    assert got == Answer(200, {"lines": [], "total": krw("0.00")})
    assert cart.lines == {}


async def test_cart_requests_the_monolith_refuses_are_refused_before_the_services() -> None:
    services = Side()
    for raw in (b"", b"{", b'{"quantity": 0}', b'{"quantity": 100}',
                b'{"quantity": 1, "extra": 1}'):
        got = await cart_answer("PUT", "/shop/cart/lines/7", raw, "jwt", services)
        assert got.status == 422, raw
    assert (await cart_answer("PUT", "/shop/cart/lines/x", b'{"quantity": 1}', "jwt",
                              services)).status == 422
    assert (await cart_answer("PUT", "/shop/cart/lines/0", b'{"quantity": 1}', "jwt",
                              services)).status == 404
    assert (await cart_answer("POST", "/shop/cart", b"", "jwt", services)).status == 405
    assert (await cart_answer("GET", "/shop/cart/nope", b"", "jwt", services)).status == 404
    assert services.calls == []


async def test_cart_errors_of_the_services_in_legacy_terms() -> None:
    services = Side({("PUT", f"/api/cart/items/{P7}"): Answer(422, {
        "status": 422, "detail": "unknown product", "reason": "unknown_product"})})
    got = await cart_answer("PUT", "/shop/cart/lines/7", b'{"quantity": 1}', "jwt", services)
    assert (got.status, got.body["title"]) == (404, "No such product")
    services.answers[("PUT", f"/api/cart/items/{P7}")] = Answer(422, {
        "detail": "a cart holds 50 products", "reason": "cart_full"})
    got = await cart_answer("PUT", "/shop/cart/lines/7", b'{"quantity": 1}', "jwt", services)
    assert (got.status, got.body["detail"]) == (422, "a cart holds 50 products")
    services.answers[("GET", "/api/cart")] = Answer(401, {})
    assert (await cart_answer("GET", "/shop/cart", b"", "jwt", services)).status == 401
    services.answers[("GET", "/api/cart")] = Answer(0, error="ClientConnectorError")
    assert (await cart_answer("GET", "/shop/cart", b"", "jwt", services)).status == 502
    services.answers[("GET", "/api/cart")] = Answer(503, {}, headers=(("retry-after", "3"),))
    got = await cart_answer("GET", "/shop/cart", b"", "jwt", services)
    assert got.status == 503 and got.headers == (("retry-after", "3"),)


async def test_a_legacy_cart_moves_to_the_services_once_and_keeps_the_larger_quantity() -> None:
    old, new = LegacyCart({7: 2, 8: 1}), Cart({P8: 4})
    legacy, services = old.side(Side()), new.side(Side())
    moved, failed = await move_legacy_cart("jwt", "session", services, legacy)
    assert (moved, failed) == (2, None)
    assert new.lines == {P8: 4, P7: 2} and old.lines == {}
    assert legacy.calls[0]["token"] == "session"  # the monolith gets the client's own token
    # Again: nothing left to move, the services' cart untouched.
    services.calls.clear()
    assert await move_legacy_cart("jwt", "session", services, legacy) == (0, None)
    assert services.calls == []


async def test_a_move_cut_short_and_repeated_adds_nothing_twice() -> None:
    old, new = LegacyCart({7: 2}), Cart()
    legacy, services = old.side(Side()), new.side(Side())
    legacy.answers[("DELETE", "/shop/cart/lines/7")] = Answer(0, error="ServerDisconnected")
    moved, failed = await move_legacy_cart("jwt", "session", services, legacy)
    assert moved == 0 and failed is not None and failed.status == 502
    assert new.lines == {P7: 2} and old.lines == {7: 2}  # on both sides for now
    old.side(legacy)
    assert (await move_legacy_cart("jwt", "session", services, legacy))[0] == 1
    assert new.lines == {P7: 2} and old.lines == {}  # 2, not 4


async def test_a_line_the_services_do_not_sell_yet_stays_at_the_monolith() -> None:
    old, new = LegacyCart({7: 1, 8: 1}), Cart()
    legacy, services = old.side(Side()), new.side(Side())
    services.answers[("PUT", f"/api/cart/items/{P7}")] = Answer(422, {"reason": "unknown_product"})
    assert (await move_legacy_cart("jwt", "session", services, legacy)) == (1, None)
    assert old.lines == {7: 1} and new.lines == {P8: 1}


# -- checkout -------------------------------------------------------------------------------

CREATED = "2026-12-02T10:00:00+00:00"


def order(status: str, reason: str | None = None, oid: str = "") -> dict[str, Any]:
    return {"id": oid or str(uuid.UUID(int=5)), "status": status, "reason": reason,
            "items": [{"product_id": P7, "sku": "SKU-7", "name": "Product 7", "quantity": 2,
                       "unit_price": krw("7000")}],
            "total": krw("14000"), "cancel_requested": False, "created_at": CREATED,
            "updated_at": CREATED}


def checkout_sides(statuses: list[dict[str, Any]]) -> tuple[Side, Side]:
    legacy = Side({("GET", "/shop/addresses"): Answer(200, [
        {"id": 3, "services_id": str(services_id("addresses", 3))},
        {"id": 9, "services_id": ADDRESS_UUID}])})
    oid = statuses[0]["id"]
    seen = iter(statuses)
    services = Side({
        ("POST", "/api/cart/checkout"): Answer(202, {"order_id": oid, "status": "PENDING"}),
        ("POST", "/api/orders"): Answer(202, {"id": oid, "status": "PENDING"}),
        ("GET", f"/api/orders/{oid}"): lambda _b, _p: Answer(200, next(seen, statuses[-1]))})
    return legacy, services


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


CHECKOUT = {"address_id": 9, "card_number": "4111111111111111"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_a_checkout_from_the_cart_waits_for_the_order_and_answers_the_legacy_doc() -> None:
    legacy, services = checkout_sides([order("PENDING"), order("PENDING"), order("APPROVED")])
    clock = Clock()
    got = await checkout_answer(body(CHECKOUT), "key-1", "jwt", "session", services, legacy,
                                clock=clock, sleep=clock.sleep,
                                received_at=datetime(2026, 12, 2, 9, 59, 59, tzinfo=UTC))
    assert got.status == 201
    placed = services.calls[0]
    # The services-born address by the monolith's services_id; the key carried over.
    assert placed["json"] == {"shipping_address_id": ADDRESS_UUID,
                              "payment": {"card_number": "4111111111111111"}}
    assert placed["headers"] == {"idempotency-key": "key-1"}
    assert got.body["id"] == services_order_id(str(uuid.UUID(int=5))) >= SERVICES_ORDER_BASE
    assert got.body["services_id"] == str(uuid.UUID(int=5))
    assert got.body["status"] == "PAID" and got.body["address_id"] == 9
    assert got.body["total"] == krw("14000.00")
    assert got.body["lines"] == [{"product_id": 7, "quantity": 2,
                                  "unit_price": krw("7000.00")}]
    assert got.body["payment"] == {"status": "CAPTURED", "card_last4": "1111"}
    assert services.paths("GET").count(f"/api/orders/{uuid.UUID(int=5)}") == 3
    # The same key later: the order placed before this request, answered 200.
    legacy, services = checkout_sides([order("APPROVED")])
    got = await checkout_answer(body(CHECKOUT), "key-1", "jwt", "session", services, legacy,
                                received_at=datetime(2026, 12, 2, 10, 0, 5, tzinfo=UTC))
    assert got.status == 200 and got.body["id"] == services_order_id(str(uuid.UUID(int=5)))
    assert checkout_outcome(got) == "replayed"


async def test_buy_now_items_are_an_order_of_their_own_with_the_legacy_address_scheme() -> None:
    legacy, services = checkout_sides([order("APPROVED")])
    got = await checkout_answer(body({**CHECKOUT, "address_id": 3, "items": [
        {"product_id": 8, "quantity": 1}, {"product_id": 7, "quantity": 1},
        {"product_id": 7, "quantity": 1}]}), "k", "jwt", "session", services, legacy)
    assert got.status == 201
    assert services.calls[0]["path"] == "/api/orders"
    assert services.calls[0]["json"] == {
        "items": [{"product_id": P7, "quantity": 2}, {"product_id": P8, "quantity": 1}],
        "shipping_address_id": str(services_id("addresses", 3)),
        "payment": {"card_number": "4111111111111111"}}


async def test_rejections_answer_the_legacy_errors() -> None:
    for reason, status in (("card_declined", 402), ("insufficient_funds", 402),
                           ("insufficient_stock", 409), ("invalid_address", 422),
                           ("charge_payment_timed_out", 409)):
        legacy, services = checkout_sides([order("REJECTED", reason)])
        got = await checkout_answer(body(CHECKOUT), "k", "jwt", "session", services, legacy)
        assert (got.status, got.body["reason"]) == (status, reason)
        assert checkout_outcome(got) == {402: "declined", 409: "refused",
                                         422: "invalid"}[status]


async def test_a_slow_order_is_a_503_naming_it_and_the_retry_gets_its_outcome() -> None:
    legacy, services = checkout_sides([order("PENDING")])
    clock = Clock()
    got = await checkout_answer(body(CHECKOUT), "k", "jwt", "session", services, legacy,
                                wait_s=2.0, poll_s=0.5, clock=clock, sleep=clock.sleep)
    assert got.status == 503 and ("retry-after", "2") in got.headers
    assert got.body["services_id"] == str(uuid.UUID(int=5))
    assert checkout_outcome(got) == "pending"
    assert 4 <= len(services.paths("GET")) <= 6  # bounded by the wait


async def test_bad_checkouts_are_refused_before_anything_is_placed() -> None:
    legacy, services = checkout_sides([order("APPROVED")])
    for raw in (b"", b"{}", body({**CHECKOUT, "card_number": "41x1"}),
                body({**CHECKOUT, "items": []}), body({**CHECKOUT, "extra": 1})):
        got = await checkout_answer(raw, "k", "jwt", "session", services, legacy)
        assert got.status == 422, raw
    got = await checkout_answer(body({**CHECKOUT, "address_id": 4}), "k", "jwt", "session",
                                services, legacy)
    assert (got.status, got.body["title"]) == (422, "No such address")
    assert services.calls == []
    services.answers[("POST", "/api/cart/checkout")] = Answer(422, {
        "detail": "the cart is empty", "reason": "empty_cart"})
    got = await checkout_answer(body(CHECKOUT), "k", "jwt", "session", services, legacy)
    assert (got.status, got.body["title"]) == (422, "Empty cart")
    services.answers[("POST", "/api/cart/checkout")] = Answer(409, {"detail": "key reused"})
    assert (await checkout_answer(body(CHECKOUT), "k", "jwt", "session", services,
                                  legacy)).status == 409


# -- the bridge -----------------------------------------------------------------------------


async def test_the_services_cart_as_monolith_items_and_emptied_after_the_order() -> None:
    cart = Cart({P7: 2, P8: 1})
    services = cart.side(Side())
    items, failed = await items_from_services_cart("jwt", services)
    assert failed is None and items == [{"product_id": 7, "quantity": 2},
                                        {"product_id": 8, "quantity": 1}]
    cart.lines[P8] = 1
    await empty_services_cart("jwt", {"lines": [{"product_id": 7, "quantity": 2}]}, services)
    assert cart.lines == {P8: 1}  # only what was ordered leaves
    await empty_services_cart("jwt", {"lines": [{"product_id": 7, "quantity": 2}]}, services)
    assert cart.lines == {P8: 1}
    services.answers[("GET", "/api/cart")] = Answer(200, {"items": [
        {"product_id": str(uuid.uuid4()), "name": "New", "quantity": 1}]})
    _, failed = await items_from_services_cart("jwt", services)
    assert failed is not None and failed.status == 409


# -- history --------------------------------------------------------------------------------


def stamp(minutes: int) -> str:
    return (datetime(2026, 12, 1, tzinfo=UTC) + timedelta(minutes=minutes)).isoformat()


def history_sides(legacy_orders: list[dict[str, Any]], services_rows: list[dict[str, Any]]
                  ) -> tuple[Side, Side]:
    def page(items: list[dict[str, Any]]) -> Any:
        def answer(_b: Any, params: dict[str, str]) -> Answer:
            p, s = int(params["page"]), int(params["page_size"])
            return Answer(200, {"items": items[(p - 1) * s:p * s], "total": len(items),
                                "page": p, "page_size": s})
        return answer
    legacy = Side({("GET", "/shop/orders"): page(legacy_orders)})
    services = Side({("GET", "/api/history/orders"): page(services_rows)})
    return legacy, services


def row(n: int, minutes: int, status: str = "APPROVED",
        shipment: str | None = "CREATED") -> dict[str, Any]:
    return {"id": str(uuid.UUID(int=n)), "customer_id": "c", "status": status,
            "total": krw(str(n * 100)),
            # As order_history answers them: the amount alone, in the order's currency.
            "items": [{"product_id": P7, "sku": "SKU-7", "name": "Product 7", "quantity": 1,
                       "unit_price": str(n * 100)}],
            "reason": None, "payment_status": "CAPTURED", "shipment_status": shipment,
            "tracking_number": None, "placed_at": stamp(minutes), "last_event_at": stamp(minutes)}


async def test_history_merges_both_sides_newest_first_and_pages() -> None:
    old = [{"id": n, "status": "PAID", "total": krw("1.00"), "created_at": stamp(m)}
           for n, m in ((3, 50), (2, 30), (1, 10))]
    new = [row(12, 40), row(11, 20, "REJECTED", None)]
    legacy, services = history_sides(old, new)
    got = await history_answer("GET", "/shop/orders", {"page": "1", "page_size": "3"}, "jwt",
                               "session", services, legacy)
    assert got.status == 200 and got.body["total"] == 5
    assert [o["id"] for o in got.body["items"]] == [3, services_order_id(str(uuid.UUID(int=12))), 2]
    assert got.body["items"][1] == {"id": services_order_id(str(uuid.UUID(int=12))),
                                    "services_id": str(uuid.UUID(int=12)), "status": "PAID",
                                    "total": krw("1200.00"), "created_at": stamp(40)}
    got = await history_answer("GET", "/shop/orders", {"page": "2", "page_size": "3"}, "jwt",
                               "session", services, legacy)
    assert [(o["id"], o["status"]) for o in got.body["items"]] == [
        (services_order_id(str(uuid.UUID(int=11))), "CANCELLED"), (1, "PAID")]
    assert legacy.calls[0]["token"] == "session" and services.calls[0]["token"] == "jwt"
    assert (await history_answer("GET", "/shop/orders", {"page": "0"}, "jwt", "session",
                                 services, legacy)).status == 422
    assert (await history_answer("GET", "/shop/orders", {"page": "11", "page_size": "100"},
                                 "jwt", "session", services, legacy)).status == 422


async def test_one_order_from_either_side_by_its_legacy_id() -> None:
    legacy, services = history_sides([], [row(12, 40, shipment="DELIVERED")])
    legacy.answers[("GET", "/shop/orders/3")] = Answer(200, {"id": 3, "status": "PAID"})
    got = await history_answer("GET", "/shop/orders/3", {}, "jwt", "session", services, legacy)
    assert got == Answer(200, {"id": 3, "status": "PAID"})
    wanted = services_order_id(str(uuid.UUID(int=12)))
    got = await history_answer("GET", f"/shop/orders/{wanted}", {}, "jwt", "session", services,
                               legacy)
    assert got.status == 200 and got.body["status"] == "DELIVERED"
    assert got.body["lines"] == [{"product_id": 7, "quantity": 1, "unit_price": krw("1200.00")}]
    got = await history_answer("GET", f"/shop/orders/{wanted + 1}", {}, "jwt", "session",
                               services, legacy)
    assert got.status == 404
    assert (await history_answer("GET", "/shop/orders/x", {}, "jwt", "session", services,
                                 legacy)).status == 422
    assert (await history_answer("POST", "/shop/orders", {}, "jwt", "session", services,
                                 legacy)).status == 405


def test_status_vocabulary() -> None:
    assert [legacy_status(s, sh) for s, sh in (
        ("APPROVED", None), ("APPROVED", "IN_TRANSIT"), ("APPROVED", "DELIVERED"),
        ("REJECTED", None), ("CANCELLED", "CANCELLED"), ("PENDING", None))] == [
        "PAID", "SHIPPED", "DELIVERED", "CANCELLED", "CANCELLED", "PENDING"]
