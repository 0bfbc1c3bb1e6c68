"""The storefront in a real browser (Debian's chromium, Playwright) against a whole
platform: a new customer signs up, searches, buys two products and cancels a second order;
a declined card; the back office adds a product a customer then buys; the product page
with inventory stopped; axe-core on the main pages. The README's screenshots come from
here (docs/images/storefront-*.png)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import psutil
import pytest
from edge_helpers import E2E_ARGON2, Platform, mercato, wait_until
from shop import bearer, new_product
from storefront_fixtures import (  # noqa: F401 - fixtures
    axe_violations,
    page,
    screenshot,
    storefront_platform,
)

pytestmark = pytest.mark.e2e

APPROVE, DECLINE = "4242 4242 4242 4242", "4000 0000 0000 0002"


def sign_in_at_identity(pg: Any, email: str, password: str) -> None:
    """On identity's own sign-in page (the storefront never sees the password), then back
    at the shop through its /auth/callback, signed in."""
    pg.wait_for_url(re.compile(r"/api/identity/authorize\?"))
    pg.get_by_label("Email").fill(email)
    pg.get_by_label("Password").fill(password)
    pg.get_by_role("button", name="Sign in").click()
    pg.get_by_role("button", name=re.compile("Sign out")).wait_for()


def sign_up(pg: Any) -> str:
    email, password = f"browser-{uuid.uuid4().hex[:10]}@example.com", "correct horse battery"
    pg.goto("/")
    pg.get_by_role("link", name="Create account").click()
    pg.get_by_label("Name").fill("Kim Min-ji")
    pg.get_by_label("Email").fill(email)
    pg.get_by_label("Password").fill(password)
    pg.get_by_role("button", name="Create account").click()
    sign_in_at_identity(pg, email, password)
    return email


def search_and_add(pg: Any, name: str, quantity: int = 1) -> None:
    pg.get_by_role("searchbox", name="Search products").fill(name)
    pg.get_by_role("button", name="Search", exact=True).click()
    pg.get_by_role("link", name=name).first.click()
    pg.get_by_role("heading", name=name).wait_for()
    pg.get_by_label("Quantity").fill(str(quantity))
    pg.get_by_role("button", name="Add to cart").click()
    pg.get_by_text("Added to your cart.").wait_for()


def pay(pg: Any, card: str, *, new_address: bool) -> str:
    pg.get_by_role("link", name="Checkout").click()
    if new_address:
        pg.get_by_label("Address", exact=True).fill("12 Sejong-daero")
        pg.get_by_label("City").fill("Seoul")
        pg.get_by_label("Postal code").fill("04524")
    pg.get_by_label("Card number").fill(card)
    pg.get_by_role("button", name=re.compile("^Pay")).click()
    pg.wait_for_url(re.compile(r"/orders/[0-9a-f-]{36}$"))
    return str(pg.url)


def settled_status(pg: Any, wanted: str) -> None:
    """The order page updates itself (htmx) until the saga settles: no reload here."""
    pg.locator(f'[data-status="{wanted}"]').wait_for(timeout=60_000)


@pytest.fixture(scope="module")
def stocked(storefront_platform: Platform) -> list[dict[str, Any]]:
    with storefront_platform.client() as c:
        admin = bearer(storefront_platform.admin_token(c))
        return [new_product(c, admin, on_hand=50, price=price)
                for price in ("12900", "34000")]


def test_a_new_customer_buys_two_products_then_cancels_an_order(
        page: Any, stocked: list[dict[str, Any]]) -> None:
    pg = page
    sign_up(pg)
    screenshot(pg, "home")
    assert not axe_violations(pg), "home"
    search_and_add(pg, stocked[0]["name"], 2)
    pg.goto(f"/products/{stocked[1]['id']}")
    screenshot(pg, "product")
    assert not axe_violations(pg), "product"
    search_and_add(pg, stocked[1]["name"])
    assert pg.locator("tfoot .total").inner_text() == "₩59,800"
    assert not axe_violations(pg), "cart"
    pg.get_by_role("link", name="Checkout").click()
    pg.get_by_label("Card number").fill(APPROVE)
    screenshot(pg, "checkout")
    assert not axe_violations(pg), "checkout"
    pg.go_back()
    order_url = pay(pg, APPROVE, new_address=True)
    settled_status(pg, "APPROVED")
    pg.locator("#tracking").wait_for(timeout=30_000)
    screenshot(pg, "order")
    assert not axe_violations(pg), "order"

    # A second order, cancelled before its parcel is dispatched.
    search_and_add(pg, stocked[0]["name"])
    second = pay(pg, APPROVE, new_address=False)
    assert second != order_url
    settled_status(pg, "APPROVED")
    pg.get_by_role("button", name="Cancel this order").click()
    pg.get_by_text("We asked to cancel this order").wait_for()
    wait_until(lambda: (pg.reload(), pg.locator('[data-status="CANCELLED"]').count())[1], 60,
               "the order cancelled")
    pg.get_by_role("link", name="Orders", exact=True).click()
    assert pg.locator("tbody tr").count() == 2


def test_a_declined_card_shows_the_reason_and_the_cart_stays(
        page: Any, stocked: list[dict[str, Any]]) -> None:
    pg = page
    sign_up(pg)
    search_and_add(pg, stocked[0]["name"])
    pay(pg, DECLINE, new_address=True)
    settled_status(pg, "REJECTED")
    reason = pg.locator("#reason").inner_text()
    assert "Not accepted" in reason and "declined" in reason, reason
    pg.get_by_role("link", name="Cart", exact=True).click()
    assert pg.get_by_role("link", name=stocked[0]["name"]).count() == 1
    pg.get_by_label(f"Quantity of {stocked[0]['name']}").fill("3")
    pg.get_by_role("button", name="Update").click()
    pg.get_by_text("Your cart was updated.").wait_for()


def test_the_back_office_adds_a_product_that_a_customer_then_buys(
        page: Any, chromium: Any, storefront_platform: Platform,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pg = page
    email, password = f"staff-{uuid.uuid4().hex[:8]}@example.com", "admin password 1"
    # The test platform's cheap argon2id for this account too: its sign-in through the
    # storefront then costs what the platform's customers' do.
    for name, value in E2E_ARGON2.items():
        monkeypatch.setenv(name, value)
    mercato(storefront_platform.home, "admin", "create-admin", email, "--password", password)
    pg.goto("/")
    pg.get_by_role("link", name="Sign in").click()
    sign_in_at_identity(pg, email, password)
    pg.get_by_role("link", name="Back office").click()
    assert not axe_violations(pg), "back office"
    pg.get_by_role("link", name="New product").click()
    name = f"Celadon tea bowl {uuid.uuid4().hex[:6]}"
    pg.get_by_label("SKU").fill(f"TEA-{uuid.uuid4().hex[:8].upper()}")
    pg.get_by_label("Name").fill(name)
    pg.get_by_label("Category").select_option(index=0)
    pg.get_by_label("Price (₩)").fill("45000")
    pg.get_by_role("button", name="Create product").click()
    pg.get_by_text("Product created.").wait_for()

    def stock_set() -> bool:
        pg.get_by_label("Units on hand").fill("7")
        pg.get_by_role("button", name="Set stock").click()
        return pg.get_by_text("Stock saved.").count() == 1

    # Inventory makes the stock row when the catalog's event reaches it.
    wait_until(stock_set, 30, "the stock row for the new product")
    assert "available 7" in pg.locator("form.box").first.inner_text()

    customer = chromium.new_context(base_url=storefront_platform.base_url)
    try:
        shopper = customer.new_page()
        sign_up(shopper)
        search_and_add(shopper, name)
        pay(shopper, APPROVE, new_address=True)
        settled_status(shopper, "APPROVED")
    finally:
        customer.close()
    pg.goto("/admin/orders")
    pg.locator("tbody tr").first.get_by_role("link").click()
    pg.locator("#saga-state").wait_for()
    assert pg.locator("#saga-state").inner_text() == "COMPLETED"


def test_the_product_page_renders_with_inventory_stopped(
        page: Any, stocked: list[dict[str, Any]], storefront_platform: Platform) -> None:
    entry = storefront_platform.state()["processes"]["inventory-1"]
    inventory = psutil.Process(entry["pid"])
    assert inventory.environ().get("MERCATO_RUNTIME_HOME") == str(storefront_platform.home)
    inventory.suspend()
    try:
        response = page.goto(f"/products/{stocked[0]['id']}")
        assert response.status == 200
        assert page.locator("#availability").inner_text() == "Availability unknown"
        assert page.get_by_role("button", name="Add to cart").count() == 1
    finally:
        inventory.resume()


def test_sign_in_and_sign_up_pages_are_accessible(page: Any) -> None:
    for path in ("/signin", "/signup", "/search?q=kettle"):
        page.goto(path)
        assert not axe_violations(page), path
