"""The ACL process on cart and checkout requests (ADR 0035), between two small stand-in sides
holding state: which side gets what, with which token and headers. The e2e module
tests/e2e/test_shopping_bridge.py runs the same paths against every real service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from acl_standins import serve
from aiohttp import web
from chassis.registry_keys import new_key_pair
from chassis.service_identity import CallerSigner
from mercato.migration.acl import Acl
from mercato.migration.guard import parse_acl_metrics
from mercato.migration.ids import services_id
from mercato.migration.routes import CAPABILITY, CART, PRIMARY, SHADOW

JWT = "header.payload.signature"  # passed on as it is: no exchange needed
P7, P8 = str(services_id("products", 7)), str(services_id("products", 8))


def krw(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "KRW"}


@dataclass
class Shop:
    legacy_cart: dict[int, int] = field(default_factory=dict)
    services_cart: dict[str, int] = field(default_factory=dict)
    checkouts: list[dict[str, Any]] = field(default_factory=list)
    services_calls: list[tuple[str, str, str | None]] = field(default_factory=list)


def legacy(shop: Shop) -> web.Application:
    async def cart(request: web.Request) -> web.Response:
        return web.json_response({"lines": [
            {"product_id": p, "name": f"Product {p}", "quantity": q,
             "unit_price": krw(f"{p}000.00")} for p, q in sorted(shop.legacy_cart.items())],
            "total": krw("0.00")})

    async def line(request: web.Request) -> web.Response:
        shop.legacy_cart.pop(int(request.match_info["id"]), None)
        return await cart(request)

    async def checkout(request: web.Request) -> web.Response:
        shop.checkouts.append({"body": await request.json(),
                               "headers": {k.lower(): v for k, v in request.headers.items()}})
        items = (await request.json()).get("items") or []
        return web.json_response({"id": 41, "status": "PAID", "lines": [
            {"product_id": i["product_id"], "quantity": i["quantity"],
             "unit_price": krw("1.00")} for i in items]}, status=201)

    async def me(request: web.Request) -> web.Response:
        # A session of a customer the services do not know yet.
        if request.headers.get("authorization") == "Bearer unsynced-session":
            return web.json_response({"id": 5, "services_id": str(services_id("customers",
                                                                              5))})
        return web.json_response({"title": "Not signed in"}, status=401)

    app = web.Application()
    app.router.add_get("/shop/me", me)
    app.router.add_get("/shop/cart", cart)
    app.router.add_delete("/shop/cart/lines/{id}", line)
    app.router.add_post("/shop/checkout", checkout)
    return app


def services(shop: Shop) -> web.Application:
    def doc() -> dict[str, Any]:
        return {"items": [{"product_id": p, "sku": "S", "name": f"Product {p[-1]}",
                           "quantity": q, "unit_price": krw("1000"), "available": True}
                          for p, q in shop.services_cart.items()],
                "total": krw("0"), "currency": "KRW"}

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        shop.services_calls.append((request.method, request.path,
                                    request.headers.get("authorization")))
        return await handler(request)  # type: ignore[no-any-return]

    async def cart(_: web.Request) -> web.Response:
        return web.json_response(doc())

    async def put(request: web.Request) -> web.Response:
        shop.services_cart[request.match_info["id"]] = (await request.json())["quantity"]
        return web.json_response(doc())

    async def delete(request: web.Request) -> web.Response:
        shop.services_cart.pop(request.match_info["id"], None)
        return web.Response(status=204)

    async def exchange(_: web.Request) -> web.Response:
        return web.json_response({"title": "No such account"}, status=404)

    app = web.Application(middlewares=[record])
    app.router.add_get("/api/cart", cart)
    app.router.add_put("/api/cart/items/{id}", put)
    app.router.add_delete("/api/cart/items/{id}", delete)
    app.router.add_post("/api/identity/exchange", exchange)
    return app


@dataclass
class Rig:
    url: str
    shop: Shop
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str, capability: str, primary: str,
                   json: Any = None, token: str = JWT, **extra: str) -> tuple[int, Any]:
        headers = {PRIMARY: primary, SHADOW: "0", CAPABILITY: capability,
                   "authorization": f"Bearer {token}", **extra}
        async with self.http.request(method, self.url + path, json=json,
                                     headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    shop = Shop()
    async with serve(legacy(shop)) as lurl, serve(services(shop)) as surl:
        acl = Acl(legacy_url=lurl, services_url=surl,
                  signer=CallerSigner("acl", new_key_pair()[0]))
        async with serve(acl.app()) as url, aiohttp.ClientSession() as http:
            yield Rig(url, shop, http)


async def test_a_cart_read_moves_the_monolith_cart_and_answers_the_legacy_shape(
        rig: Rig) -> None:
    rig.shop.legacy_cart = {7: 2}
    rig.shop.services_cart = {P8: 1}
    status, body = await rig.call("GET", "/shop/cart", "cart", "services")
    assert status == 200
    assert [(line["product_id"], line["quantity"]) for line in body["lines"]] == [(7, 2), (8, 1)]
    assert rig.shop.legacy_cart == {} and rig.shop.services_cart == {P8: 1, P7: 2}
    assert {auth for _, _, auth in rig.shop.services_calls} == {f"Bearer {JWT}"}
    async with rig.http.get(rig.url + "/metrics") as resp:
        assert parse_acl_metrics(await resp.text())[("acl_cart_lines_moved_total",)] == 1


async def test_a_monolith_checkout_of_a_services_cart(rig: Rig) -> None:
    rig.shop.services_cart = {P7: 2, P8: 1}
    status, body = await rig.call("POST", "/shop/checkout", "checkout", "legacy",
                                  json={"address_id": 3, "card_number": "4242424242424242"},
                                  **{CART: "services", "Idempotency-Key": "k-1"})
    assert status == 201 and body["id"] == 41
    sent = rig.shop.checkouts[0]
    assert sent["body"] == {"address_id": 3, "card_number": "4242424242424242",
                            "items": [{"product_id": 7, "quantity": 2},
                                      {"product_id": 8, "quantity": 1}]}
    assert sent["headers"]["idempotency-key"] == "k-1"
    assert CART not in sent["headers"]
    assert rig.shop.services_cart == {}  # what was ordered left the services' cart


async def test_buy_now_and_unbridged_checkouts_pass_through_untouched(rig: Rig) -> None:
    rig.shop.services_cart = {P7: 2}
    body = {"address_id": 3, "card_number": "4242424242424242",
            "items": [{"product_id": 8, "quantity": 1}]}
    status, _ = await rig.call("POST", "/shop/checkout", "checkout", "legacy", json=body,
                               **{CART: "services"})
    assert status == 201 and rig.shop.checkouts[-1]["body"] == body
    status, _ = await rig.call("POST", "/shop/checkout", "checkout", "legacy",
                               json={"address_id": 3, "card_number": "4242424242424242"})
    assert status == 201 and "items" not in rig.shop.checkouts[-1]["body"]
    # Neither asked the services: "buy now" is not the cart's, and the other one was not
    # sent by the edge as a customer's whose cart is on the services.
    assert rig.shop.services_cart == {P7: 2} and rig.shop.services_calls == []


async def test_a_refused_checkout_moves_no_cart(rig: Rig) -> None:
    rig.shop.legacy_cart = {7: 2}
    status, _ = await rig.call("POST", "/shop/checkout", "checkout", "services",
                               json={"address_id": 3, "card_number": "not a card"})
    assert status == 422
    assert rig.shop.legacy_cart == {7: 2} and rig.shop.services_calls == []


@pytest.mark.parametrize("wait", ["-1", "13", "nan"])
def test_a_checkout_wait_the_edge_would_not_wait_for_is_refused(
        wait: str, capsys: pytest.CaptureFixture[str]) -> None:
    from mercato.migration.acl import main

    with pytest.raises(SystemExit) as exc:
        main(["--port", "1", "--legacy-url", "http://x", "--services-url", "http://y",
              "--checkout-wait-s", wait])
    assert exc.value.code == 2 and "--checkout-wait-s must be 0-12" in capsys.readouterr().err


@pytest.mark.parametrize("session", ["expired-session", "unsynced-session"])
async def test_a_bridged_checkout_without_a_services_account_is_the_monolith_s_own(
        rig: Rig, session: str) -> None:
    rig.shop.services_cart = {P7: 2}  # someone's: not reachable without a services token
    status, _ = await rig.call("POST", "/shop/checkout", "checkout", "legacy", token=session,
                               json={"address_id": 3, "card_number": "4242424242424242"},
                               **{CART: "services"})
    assert status == 201  # the stand-in monolith's answer, passed on
    sent = rig.shop.checkouts[-1]
    assert "items" not in sent["body"]
    assert sent["headers"]["authorization"] == f"Bearer {session}"
    assert rig.shop.services_cart == {P7: 2}
