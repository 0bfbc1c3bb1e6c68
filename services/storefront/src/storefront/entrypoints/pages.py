"""The shop's pages: browse, search, product, cart, checkout, orders, account.

Every POST carries the CSRF token of the browser's cookie (``csrf`` field), checked before
anything else; a failed check is a 403 page and changes nothing.
"""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import quote

from chassis.http_client import UpstreamUnavailable
from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from storefront.adapters.backends import Refused
from storefront.adapters.identity import RegistrationRefused, SignInRefused
from storefront.domain.images import product_svg
from storefront.domain.model import can_cancel, order_needs_polling
from storefront.entrypoints.deps import (
    ShopDep,
    SignInRequired,
    VisitorDep,
    form_of,
    redirect,
    render,
    require_customer,
    safe_next,
    with_cookie,
)
from storefront.service_layer import checkout, compose
from storefront.service_layer.sessions import Visitor

router = APIRouter(include_in_schema=False)

Page = Annotated[int, Query(ge=1, le=10_000)]
MAX_QUANTITY = 100


class CsrfRefused(Exception):
    pass


async def checked_form(request: Request, shop: ShopDep, visitor: Visitor) -> dict[str, str]:
    form = await form_of(request)
    if not shop.sessions.csrf_ok(visitor, form.get("csrf")):
        raise CsrfRefused()
    return form


def client_address(request: Request) -> str | None:
    return request.headers.get("x-mercato-client-address") or (
        request.client.host if request.client else None)


@router.get("/")
async def home(request: Request, shop: ShopDep, visitor: VisitorDep) -> Response:
    page = await compose.home(shop.backends)
    return render(shop, request, visitor, "home.html", page=page)


@router.get("/search")
async def search(request: Request, shop: ShopDep, visitor: VisitorDep,
                 q: Annotated[str | None, Query(max_length=200)] = None,
                 category: Annotated[str | None, Query(max_length=63,
                                                       pattern=r"^[a-z0-9-]*$")] = None,
                 page: Page = 1) -> Response:
    composed = await compose.search(shop.backends, q=(q or "").strip() or None,
                                    category=category or None, page=page,
                                    page_size=shop.settings.page_size)
    return render(shop, request, visitor, "search.html", page=composed, q=q or "",
                  category=category or "")


@router.get("/products/{product_id}")
async def product(product_id: str, request: Request, shop: ShopDep,
                  visitor: VisitorDep) -> Response:
    try:
        uuid.UUID(product_id)
    except ValueError:
        return render(shop, request, visitor, "not_found.html", 404, what="product")
    page = await compose.product_page(shop.backends, product_id)
    if page.get("product") is None:
        return render(shop, request, visitor, "not_found.html", 404, what="product")
    return render(shop, request, visitor, "product.html", page=page)


@router.get("/img/product.svg")
async def product_image(n: Annotated[str, Query(max_length=200)] = "",
                        c: Annotated[str, Query(max_length=63)] = "") -> Response:
    return Response(product_svg(n, c), media_type="image/svg+xml",
                    headers={"Cache-Control": "public, max-age=86400"})


# -- cart ----------------------------------------------------------------------------------

@router.get("/cart")
async def cart(request: Request, shop: ShopDep, visitor: VisitorDep) -> Response:
    customer = require_customer(visitor, request)
    try:
        found = await shop.backends.cart(customer.access_token)
    except UpstreamUnavailable:
        return render(shop, request, visitor, "cart.html", cart=None, missing=True)
    return render(shop, request, visitor, "cart.html", cart=found, missing=False,
                  notice=request.query_params.get("notice"))


def _quantity(raw: str | None, default: int | None = None) -> int | None:
    try:
        value = int(raw) if raw not in (None, "") else default
    except ValueError:
        return None
    if value is None or not 0 <= value <= MAX_QUANTITY:
        return None
    return value


@router.post("/cart/items")
async def add_to_cart(request: Request, shop: ShopDep, visitor: VisitorDep) -> Response:
    form = await checked_form(request, shop, visitor)
    product_id = form.get("product_id", "")
    if visitor.customer is None:
        # Back to the product after signing in (the POST itself cannot be replayed).
        raise SignInRequired(f"/products/{quote(product_id, safe='')}")
    customer = visitor.customer
    quantity = _quantity(form.get("quantity"), 1)
    if not quantity:
        return await _cart_error(request, shop, visitor, "Choose a quantity from 1 to 100.")
    try:
        current = await shop.backends.cart(customer.access_token)
        held = sum(int(i["quantity"]) for i in current.get("items", [])
                   if str(i["product_id"]) == product_id)
        await shop.backends.set_cart_item(customer.access_token, product_id,
                                          min(MAX_QUANTITY, held + quantity))
    except Refused as exc:
        return await _cart_error(request, shop, visitor, exc.detail)
    return redirect(shop, visitor, "/cart?notice=added")


@router.post("/cart/items/{product_id}")
async def change_cart_item(product_id: str, request: Request, shop: ShopDep,
                           visitor: VisitorDep) -> Response:
    form = await checked_form(request, shop, visitor)
    customer = require_customer(visitor, request)
    quantity = _quantity(form.get("quantity"))
    if quantity is None:
        return await _cart_error(request, shop, visitor, "Choose a quantity from 0 to 100.")
    try:
        if quantity == 0 or form.get("action") == "remove":
            await shop.backends.remove_cart_item(customer.access_token, product_id)
        else:
            await shop.backends.set_cart_item(customer.access_token, product_id, quantity)
    except Refused as exc:
        return await _cart_error(request, shop, visitor, exc.detail)
    return redirect(shop, visitor, "/cart?notice=updated")


async def _cart_error(request: Request, shop: ShopDep, visitor: Visitor,
                      message: str) -> Response:
    customer = require_customer(visitor, request)
    try:
        found = await shop.backends.cart(customer.access_token)
    except UpstreamUnavailable:
        found = None
    return render(shop, request, visitor, "cart.html", 422, cart=found, missing=found is None,
                  error=message)


# -- checkout ------------------------------------------------------------------------------

@router.get("/checkout")
async def checkout_page(request: Request, shop: ShopDep, visitor: VisitorDep) -> Response:
    return await _checkout_page(request, shop, visitor)


async def _checkout_page(request: Request, shop: ShopDep, visitor: Visitor,
                         error: str | None = None, field: str | None = None,
                         form: dict[str, str] | None = None) -> Response:
    customer = require_customer(visitor, request)
    try:
        found = await shop.backends.cart(customer.access_token)
    except UpstreamUnavailable:
        found = None
    try:
        addresses = await shop.backends.addresses(customer.access_token)
    except UpstreamUnavailable:
        addresses = None
    if found is not None and not found.get("items") and error is None:
        return redirect(shop, visitor, "/cart")
    return render(shop, request, visitor, "checkout.html", 422 if error else 200, cart=found,
                  addresses=addresses, checkout_key=uuid.uuid4().hex, error=error,
                  field=field, form=form or {})


@router.post("/checkout")
async def place_order(request: Request, shop: ShopDep, visitor: VisitorDep) -> Response:
    form = await checked_form(request, shop, visitor)
    customer = require_customer(visitor, request)
    kept = {k: v for k, v in form.items() if k in checkout.ADDRESS_FIELDS or k == "address_id"}
    try:
        parsed = checkout.CheckoutForm.parse(form)
        order_id = await checkout.place_order(shop.uow, shop.backends, customer, parsed)
    except checkout.CheckoutError as exc:
        return await _checkout_page(request, shop, visitor, exc.message, exc.field, kept)
    return redirect(shop, visitor, f"/orders/{order_id}")


# -- orders --------------------------------------------------------------------------------

@router.get("/orders")
async def orders(request: Request, shop: ShopDep, visitor: VisitorDep) -> Response:
    customer = require_customer(visitor, request)
    try:
        found = await shop.backends.orders(customer.access_token)
    except UpstreamUnavailable:
        found = None
    return render(shop, request, visitor, "orders.html", orders=found)


async def _order_context(shop: ShopDep, visitor: Visitor, request: Request,
                         order_id: str) -> dict[str, object] | None:
    customer = require_customer(visitor, request)
    try:
        uuid.UUID(order_id)
    except ValueError:
        return None
    row = await checkout.payment_method_of(shop.uow, customer, order_id)
    page = await compose.order_page(shop.backends, customer.access_token, order_id,
                                    row["payment_method_id"] if row else None)
    order = page.get("order")
    if order is None:
        return None
    if order.get("status") == "APPROVED" and row and not row["cart_cleared"]:
        try:
            await checkout.clear_ordered_lines(shop.uow, shop.backends, customer, order_id)
        except (UpstreamUnavailable, Refused):
            pass  # the next look at the order tries again
    shipment = page.get("shipment")
    return {"page": page, "order": order, "shipment": shipment,
            "polling": order_needs_polling(order, shipment, "shipment" not in page.missing),
            "cancellable": can_cancel(order, shipment),
            "console_url": shop.settings.console_url}


@router.get("/orders/{order_id}")
async def order(order_id: str, request: Request, shop: ShopDep,
                visitor: VisitorDep) -> Response:
    context = await _order_context(shop, visitor, request, order_id)
    if context is None:
        return render(shop, request, visitor, "not_found.html", 404, what="order")
    return render(shop, request, visitor, "order.html", **context,
                  notice=request.query_params.get("notice"))


@router.get("/orders/{order_id}/status")
async def order_status(order_id: str, request: Request, shop: ShopDep,
                       visitor: VisitorDep) -> Response:
    """The part of the order page that changes, for htmx to swap in while the saga runs."""
    context = await _order_context(shop, visitor, request, order_id)
    if context is None:
        return render(shop, request, visitor, "not_found.html", 404, what="order")
    return render(shop, request, visitor, "_order_status.html", **context)


@router.post("/orders/{order_id}/cancel")
async def cancel(order_id: str, request: Request, shop: ShopDep,
                 visitor: VisitorDep) -> Response:
    await checked_form(request, shop, visitor)
    customer = require_customer(visitor, request)
    try:
        uuid.UUID(order_id)
        await shop.backends.cancel_order(customer.access_token, order_id)
    except ValueError:
        return render(shop, request, visitor, "not_found.html", 404, what="order")
    except Refused as exc:
        context = await _order_context(shop, visitor, request, order_id)
        if context is None:
            return render(shop, request, visitor, "not_found.html", 404, what="order")
        return render(shop, request, visitor, "order.html", 409, **context,
                      error=f"The order cannot be cancelled: {exc.detail}")
    return redirect(shop, visitor, f"/orders/{order_id}?notice=cancel_requested")


# -- account -------------------------------------------------------------------------------

CALLBACK_PATH = "/auth/callback"


def callback_uri(request: Request, shop: ShopDep) -> str:
    """The callback on the host name the browser used: its cookie lives there, and identity
    accepts only the exact URIs `mercato up` registered (localhost and 127.0.0.1)."""
    scheme = "https" if shop.settings.cookie_secure else "http"
    host = request.headers.get("host") or request.url.netloc
    return f"{scheme}://{host}{CALLBACK_PATH}"


async def _to_identity(request: Request, shop: ShopDep, visitor: Visitor,
                       next_url: str, status: int = 302) -> Response:
    target = await shop.sessions.begin_sign_in(visitor, redirect_uri=callback_uri(request, shop),
                                               next_url=next_url)
    response = with_cookie(RedirectResponse(target, status_code=status), visitor, shop.settings)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/signin")
async def signin(request: Request, shop: ShopDep, visitor: VisitorDep,
                 next: Annotated[str | None, Query(max_length=500)] = None) -> Response:
    """Identity's sign-in page, by the authorization code flow with PKCE: the storefront
    never sees the password, and the password grant is not used by browsers."""
    return await _to_identity(request, shop, visitor, safe_next(next))


@router.get(CALLBACK_PATH)
async def auth_callback(request: Request, shop: ShopDep, visitor: VisitorDep,
                        code: Annotated[str | None, Query(max_length=200)] = None,
                        state: Annotated[str | None, Query(max_length=500)] = None,
                        error: Annotated[str | None, Query(max_length=100)] = None) -> Response:
    if error is not None:
        # Identity sends errors back with the state; the sign-in under way stays usable.
        return render(shop, request, visitor, "error.html", 400, title="Sign-in failed",
                      message="The sign-in did not complete. Please try again.")
    try:
        signed_in, next_url = await shop.sessions.finish_sign_in(visitor, code=code or "",
                                                                 state=state or "")
    except SignInRefused:
        return render(shop, request, visitor, "error.html", 400, title="Sign-in failed",
                      message="This sign-in link is not valid for this browser (it was used "
                              "already, is too old, or was not started here). Please sign "
                              "in again.")
    return redirect(shop, signed_in, next_url)


@router.get("/signup")
async def signup_page(request: Request, shop: ShopDep, visitor: VisitorDep) -> Response:
    return render(shop, request, visitor, "signup.html", form={})


@router.post("/signup")
async def signup(request: Request, shop: ShopDep, visitor: VisitorDep) -> Response:
    form = await checked_form(request, shop, visitor)
    email, name = form.get("email", "").strip(), form.get("name", "").strip()
    password = form.get("password", "")
    kept = {"email": email, "name": name}
    if not email or not name or not password:
        return render(shop, request, visitor, "signup.html", 422, form=kept,
                      error="Fill in your name, email and a password.")
    if len(password) < 8:
        return render(shop, request, visitor, "signup.html", 422, form=kept,
                      error="Choose a password of at least 8 characters.")
    try:
        await shop.identity.register(email, password, name,
                                     client_address=client_address(request))
    except RegistrationRefused as exc:
        return render(shop, request, visitor, "signup.html", exc.status, form=kept,
                      error=exc.detail)
    # The new account signs in like every other, on identity's page.
    return await _to_identity(request, shop, visitor, "/", 303)


@router.post("/signout")
async def signout(request: Request, shop: ShopDep, visitor: VisitorDep) -> Response:
    await checked_form(request, shop, visitor)
    return redirect(shop, await shop.sessions.sign_out(visitor), "/")
