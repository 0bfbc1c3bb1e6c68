"""The storefront through the edge, as a browser uses it (forms, cookies, redirects): pages
composed from the services, one order per checkout form, CSRF, tokens kept server-side, and
pages that still render with inventory stopped."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import psutil
import pytest
from edge_helpers import Platform, wait_until
from mercato.runtime.supervisor import DEMO_STOCK_ON_HAND
from shop import bearer, new_product
from storefront_kit import ADDRESS, Shopper, csrf_of

pytestmark = pytest.mark.e2e

APPROVE, DECLINE = "4242424242424242", "4000000000000002"


def test_pages_are_composed_and_served_at_the_root(platform: Platform) -> None:
    with Shopper(platform) as s:
        home = s.get("/")
        assert home.status_code == 200
        assert home.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in home.headers["content-security-policy"]
        assert home.headers["cache-control"] == "no-store"
        cookie = home.headers["set-cookie"]
        assert "sf_sid=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert re.search(r"₩\d{1,3}(,\d{3})+", home.text), "prices in won"
        assert 'href="/search?category=' in home.text  # categories
        first = s.get("/search", params={"page": "1"})
        assert first.status_code == 200 and "page 1 of" in first.text
        second = s.get("/search", params={"page": "2"})
        assert second.status_code == 200 and 'rel="prev"' in second.text
        assert s.get("/search", params={"page": "0"}).status_code == 422
        product_id = re.findall(r'href="/products/([0-9a-f-]{36})"', first.text)[0]
        page = s.get(f"/products/{product_id}")
        assert page.status_code == 200 and 'id="availability"' in page.text
        assert s.get("/products/not-a-product").status_code == 404
        assert s.get("/static/shop.css").status_code == 200
        svg = s.get("/img/product.svg", params={"n": "Kettle", "c": "kitchen"})
        assert svg.headers["content-type"].startswith("image/svg+xml")
        # The storefront's own health and metrics are not routed by the edge.
        assert s.get("/metrics").status_code == 404
        assert s.get("/health/ready").status_code == 404


def test_a_double_submitted_checkout_makes_one_order_and_tokens_stay_on_the_server(
        platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = new_product(c, admin, on_hand=20, price="12900")
    with Shopper(platform) as s:
        s.sign_up()
        s.add(product["id"], 2)
        cart = s.get("/cart").text
        assert "₩25,800" in cart
        form = s.checkout_form(APPROVE)
        answers: list[str] = []

        def pay() -> None:
            answer = s.http.post("/checkout", data=form)
            assert answer.status_code == 303, answer.text
            answers.append(answer.headers["location"])

        clicks = [threading.Thread(target=pay) for _ in range(3)]
        for t in clicks:
            t.start()
        for t in clicks:
            t.join()
        pay()  # a reload of the POST, after the others
        assert len(set(answers)) == 1, answers
        order_path = answers[0]
        wait_until(lambda: s.status_of(order_path) == "APPROVED", 60, "the order approved")
        orders = s.get("/orders").text
        assert orders.count('href="/orders/') == 1
        order_page = wait_until(lambda: (p := s.get(order_path).text) and 'id="tracking"' in p
                                and p, 30, "the tracking number")
        assert "ending in 4242" in order_page
        assert "Your cart is empty" in s.get("/cart").text  # the ordered lines left it
        # The browser holds the shop's one cookie (and identity's sign-in page its form's
        # CSRF nonce, sent only to that page) and never a token.
        assert set(s.http.cookies.keys()) == {"sf_sid", "identity_csrf"}
        assert all(c.path == "/api/identity/authorize" for c in s.http.cookies.jar
                   if c.name == "identity_csrf")
        assert all("eyJ" not in c.value for c in s.http.cookies.jar)
        for path in ("/", "/cart", "/orders", order_path, "/checkout"):
            assert "eyJ" not in s.get(path).text, path
        # Shipping stopped: the order page still renders, and says what it is missing.
        shipping = psutil.Process(platform.state()["processes"]["shipping-1"]["pid"])
        assert shipping.environ().get("MERCATO_RUNTIME_HOME") == str(platform.home)
        shipping.suspend()
        try:
            page = s.get(order_path)
        finally:
            shipping.resume()
        assert page.status_code == 200
        assert "APPROVED" in page.text and "ending in 4242" in page.text
        assert "Shipment tracking is unavailable right now" in page.text


def test_a_declined_card_shows_the_reason_and_leaves_the_cart_usable(
        platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = new_product(c, admin, on_hand=5)
    with Shopper(platform) as s:
        s.sign_up()
        s.add(product["id"])
        answer = s.http.post("/checkout", data=s.checkout_form(DECLINE))
        assert answer.status_code == 303
        order_path = answer.headers["location"]
        wait_until(lambda: s.status_of(order_path) == "REJECTED", 60, "the decline")
        page = s.get(order_path).text
        assert "Not accepted:" in page and "try another card" in page
        assert product["name"] in s.get("/cart").text
        # The same cart pays with another card, through a new checkout form.
        again = s.http.post("/checkout", data={**s.checkout_form(APPROVE),
                                               "address_id": ADDRESS["address_id"]})
        assert again.status_code == 303 and again.headers["location"] != order_path


def test_forms_without_the_csrf_token_change_nothing(platform: Platform) -> None:
    with platform.client() as c:
        product = c.get("/api/catalog/products").json()["items"][0]
    with Shopper(platform) as s:
        s.sign_up()
        refused = s.http.post("/cart/items", data={"product_id": product["id"],
                                                   "quantity": "1"})
        assert refused.status_code == 403
        forged = s.http.post("/cart/items", data={"product_id": product["id"], "quantity": "1",
                                                  "csrf": "0" * 40})
        assert forged.status_code == 403
        assert "Your cart is empty" in s.get("/cart").text
        assert s.http.post("/signout", data={}).status_code == 403
        assert "Sign out" in s.get("/").text
        # A browser without the shop's cookie cannot post a form either.
        with Shopper(platform) as stranger:
            assert stranger.http.post("/signup", data={
                "email": s.email, "password": s.password, "name": "Kim",
                "csrf": csrf_of(s.get("/signup").text)}).status_code == 403


def test_signing_in_issues_a_new_cookie_and_signing_out_ends_the_session(
        platform: Platform) -> None:
    with Shopper(platform) as s:
        s.sign_up()
        signed_in = s.http.cookies["sf_sid"]
        s.http.post("/signout", data={"csrf": csrf_of(s.get("/").text)})
        assert s.http.cookies["sf_sid"] != signed_in
        assert "Sign in" in s.get("/").text
        # The old cookie signs no one in any more.
        with Shopper(platform) as thief:
            thief.http.cookies.set("sf_sid", signed_in)
            assert thief.get("/cart").status_code == 303
        # Signing in is on identity's page: a wrong password stays there.
        bad = s.at_identity(s.get("/signin"), s.email, "wrong password")
        assert bad.status_code != 303 and "location" not in bad.headers
        s.sign_in(s.email, s.password, "/cart")
        assert s.get("/cart").status_code == 200


def test_sign_in_is_the_code_flow_and_the_callback_checks_state_and_spends_codes(
        platform: Platform) -> None:
    with Shopper(platform) as s:
        s.sign_up()
        s.http.post("/signout", data={"csrf": csrf_of(s.get("/").text)})
        started = s.get("/signin", params={"next": "/orders"})
        assert started.status_code == 302 and started.headers["cache-control"] == "no-store"
        sent = parse_qs(urlsplit(started.headers["location"]).query)
        # The verifier stays on the server: the browser sees only its S256 challenge.
        assert sent["code_challenge_method"] == ["S256"] and "code_verifier" not in sent
        assert sent["client_id"] == ["storefront"] and len(sent["state"][0]) >= 32
        callback = s.callback(started, s.email, s.password)
        code = parse_qs(urlsplit(callback).query)["code"][0]

        missing = s.get("/auth/callback", params={"code": code})
        wrong = s.get("/auth/callback", params={"code": code, "state": "forged"})
        assert missing.status_code == wrong.status_code == 400
        assert "Sign in" in s.get("/").text and "Sign out" not in s.get("/").text
        # Another browser cannot finish this browser's sign-in, even with its state.
        with Shopper(platform) as stranger:
            assert stranger.get(callback).status_code == 400
        # Those refusals left the real sign-in usable.
        done = s.get(callback)
        assert done.status_code == 303 and done.headers["location"] == "/orders"
        assert "Sign out" in s.get("/").text

        # The same callback again: its sign-in is spent.
        assert s.get(callback).status_code == 400
        # The code with the state of a new sign-in: identity refuses a code used once.
        fresh = parse_qs(urlsplit(s.get("/signin").headers["location"]).query)["state"][0]
        reused = s.get("/auth/callback", params={"code": code, "state": fresh})
        assert reused.status_code == 400


def test_the_product_page_renders_with_inventory_stopped(platform: Platform) -> None:
    with platform.client() as c:
        product = c.get("/api/catalog/products").json()["items"][0]
    entry = platform.state()["processes"]["inventory-1"]
    inventory = psutil.Process(entry["pid"])
    assert inventory.environ().get("MERCATO_RUNTIME_HOME") == str(platform.home)
    with Shopper(platform) as s:
        assert "Availability unknown" not in s.get(f"/products/{product['id']}").text
        inventory.suspend()  # SIGSTOP: connections open, nothing answers
        try:
            started = time.monotonic()
            page = s.get(f"/products/{product['id']}")
            took = time.monotonic() - started
            assert page.status_code == 200, page.text
            assert "Availability unknown" in page.text
            assert product["name"] in page.text and "Add to cart" in page.text
            home = s.get("/")
            assert home.status_code == 200 and "Availability is unknown" in home.text
        finally:
            inventory.resume()
        print(f"product page with inventory stopped: {took:.2f} s")
        wait_until(lambda: "Availability unknown" not in s.get(
            f"/products/{product['id']}").text, 30, "availability known again")
    # The storefront reaches inventory directly; the edge ejected the stopped instance for
    # its timeouts (longer with each ejection), so later tests wait for the edge as well.
    with platform.client() as c:
        wait_until(lambda: c.get(f"/api/inventory/stock/{product['sku']}").status_code
                   == 200, 90, "the edge routing to inventory again")


def test_the_demo_catalog_has_stock_on_a_new_home_and_later_products_do_not(
        platform: Platform) -> None:
    """`mercato up` stocks the seeded products once, before the platform is ready, so a
    new user can buy at once; products created afterwards start with nothing on hand."""
    marker = json.loads((platform.home / "demo-stock.json").read_text())
    assert marker["products"] == 50 and marker["on_hand"] == DEMO_STOCK_ON_HAND
    with platform.client() as c:
        # By SKU, not from a page of the catalog: on the shared platform other tests have
        # added (and discontinued) products by the time this one runs.
        for sku in ("COF-ETH-250", "KIT-KNF-20", "BOK-PY-01", "APP-SCF-01"):
            stock = c.get(f"/api/inventory/stock/{sku}").json()
            assert stock["on_hand"] > 0, stock
        seeded = c.get("/api/catalog/products", params={"q": "Yirgacheffe"}).json()["items"]
        assert [p["sku"] for p in seeded] == ["COF-ETH-250"]
        assert c.get("/api/inventory/stock/COF-ETH-250").json()["available"] > 0
        admin = bearer(platform.admin_token(c))
        sku = f"CC-{uuid.uuid4().hex[:10].upper()}"
        created = c.post("/api/catalog/products", headers=admin, json={
            "sku": sku, "name": f"E2E kettle {sku}", "description": "e2e",
            "category": "kitchen", "price": {"amount": "39000", "currency": "KRW"}})
        assert created.status_code == 201, created.text
        stock = wait_until(lambda: (r := c.get(f"/api/inventory/stock/{sku}")).status_code
                           == 200 and r.json(), 30, "the stock row")
        assert stock["on_hand"] == 0
    with Shopper(platform) as s:
        page = s.get(f"/products/{seeded[0]['id']}")
        assert page.status_code == 200 and 'class="stock in"' in page.text, page.text
