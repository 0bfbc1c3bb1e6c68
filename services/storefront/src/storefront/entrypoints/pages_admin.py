"""The back office (admins only): products (create, edit, discontinue), stock per SKU, and
orders with their saga's state and a link to the console's trace of it.

Every call carries the admin's own token: catalog, inventory and orders check the admin
role themselves, so this page grants nothing the services would not.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from chassis.http_client import UpstreamUnavailable
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from storefront.adapters.backends import Refused
from storefront.entrypoints.deps import ShopDep, VisitorDep, redirect, render, require_admin
from storefront.entrypoints.pages import checked_form
from storefront.service_layer import compose

router = APIRouter(prefix="/admin", include_in_schema=False)


@router.get("")
async def admin_home(request: Request, shop: ShopDep, visitor: VisitorDep) -> Response:
    require_admin(visitor, request)
    return redirect(shop, visitor, "/admin/products")


@router.get("/products")
async def products(request: Request, shop: ShopDep, visitor: VisitorDep,
                   q: Annotated[str | None, Query(max_length=200)] = None,
                   page: Annotated[int, Query(ge=1, le=10_000)] = 1) -> Response:
    require_admin(visitor, request)
    composed = await compose.search(shop.backends, q=(q or "").strip() or None, category=None,
                                    page=page, page_size=25)
    return render(shop, request, visitor, "admin/products.html", page=composed, q=q or "",
                  notice=request.query_params.get("notice"))


def _product_body(form: dict[str, str], *, creating: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "description": form.get("description", "").strip(),
        "category": form.get("category", "").strip(),
        "price": {"amount": form.get("price", "").strip().replace(",", ""),
                  "currency": "KRW"},
    }
    if creating:
        body["sku"] = form.get("sku", "").strip()
    return body


@router.get("/products/new")
async def new_product(request: Request, shop: ShopDep, visitor: VisitorDep) -> Response:
    require_admin(visitor, request)
    return await _product_form(request, shop, visitor, None, {})


async def _product_form(request: Request, shop: ShopDep, visitor: VisitorDep,
                        product: dict[str, Any] | None, form: dict[str, str],
                        error: str | None = None, status: int = 200) -> Response:
    try:
        categories = await shop.backends.categories()
    except UpstreamUnavailable:
        categories = []
    stock = None
    if product is not None:
        try:
            stock = (await shop.backends.stock([product["sku"]])).get(product["sku"])
        except UpstreamUnavailable:
            stock = None
    return render(shop, request, visitor, "admin/product_form.html", status, product=product,
                  form=form, categories=categories, stock=stock, error=error,
                  notice=request.query_params.get("notice"))


@router.post("/products")
async def create_product(request: Request, shop: ShopDep, visitor: VisitorDep) -> Response:
    form = await checked_form(request, shop, visitor)
    admin = require_admin(visitor, request)
    try:
        created = await shop.backends.create_product(admin.access_token,
                                                     _product_body(form, creating=True))
    except Refused as exc:
        return await _product_form(request, shop, visitor, None, form,
                                   f"The catalog refused the product: {exc.detail}", 422)
    return redirect(shop, visitor, f"/admin/products/{created['id']}?notice=created")


async def _product(shop: ShopDep, product_id: str) -> dict[str, Any] | None:
    try:
        uuid.UUID(product_id)
    except ValueError:
        return None
    return await shop.backends.product(product_id, fresh=True)


@router.get("/products/{product_id}")
async def edit_product(product_id: str, request: Request, shop: ShopDep,
                       visitor: VisitorDep) -> Response:
    require_admin(visitor, request)
    product = await _product(shop, product_id)
    if product is None:
        return render(shop, request, visitor, "not_found.html", 404, what="product")
    form = {"name": product["name"], "description": product.get("description", ""),
            "category": product["category"], "price": str(product["price"]["amount"])}
    return await _product_form(request, shop, visitor, product, form)


@router.post("/products/{product_id}")
async def update_product(product_id: str, request: Request, shop: ShopDep,
                         visitor: VisitorDep) -> Response:
    form = await checked_form(request, shop, visitor)
    admin = require_admin(visitor, request)
    product = await _product(shop, product_id)
    if product is None:
        return render(shop, request, visitor, "not_found.html", 404, what="product")
    try:
        await shop.backends.update_product(admin.access_token, product_id,
                                           _product_body(form, creating=False))
    except Refused as exc:
        return await _product_form(request, shop, visitor, product, form,
                                   f"The catalog refused the change: {exc.detail}", 422)
    return redirect(shop, visitor, f"/admin/products/{product_id}?notice=saved")


@router.post("/products/{product_id}/discontinue")
async def discontinue(product_id: str, request: Request, shop: ShopDep,
                      visitor: VisitorDep) -> Response:
    await checked_form(request, shop, visitor)
    admin = require_admin(visitor, request)
    try:
        uuid.UUID(product_id)
        await shop.backends.discontinue_product(admin.access_token, product_id)
    except (ValueError, Refused):
        return render(shop, request, visitor, "not_found.html", 404, what="product")
    return redirect(shop, visitor, "/admin/products?notice=discontinued")


@router.post("/stock/{product_id}")
async def set_stock(product_id: str, request: Request, shop: ShopDep,
                    visitor: VisitorDep) -> Response:
    form = await checked_form(request, shop, visitor)
    admin = require_admin(visitor, request)
    product = await _product(shop, product_id)
    if product is None:
        return render(shop, request, visitor, "not_found.html", 404, what="product")
    raw = form.get("on_hand", "").strip()
    if not raw.isdigit() or int(raw) > 1_000_000:
        return await _product_form(request, shop, visitor, product, _form_of(product),
                                   "Units on hand must be a whole number from 0 to 1000000.",
                                   422)
    try:
        await shop.backends.set_stock(admin.access_token, product["sku"], int(raw))
    except Refused as exc:
        message = (f"Inventory has no stock row for {product['sku']} yet (it is made when "
                   "the catalog announces the product): try again in a moment."
                   if exc.status == 404 else f"Inventory refused: {exc.detail}")
        return await _product_form(request, shop, visitor, product, _form_of(product),
                                   message, 409 if exc.status == 404 else 422)
    return redirect(shop, visitor, f"/admin/products/{product_id}?notice=stock_saved")


def _form_of(product: dict[str, Any]) -> dict[str, str]:
    return {"name": product["name"], "description": product.get("description", ""),
            "category": product["category"], "price": str(product["price"]["amount"])}


@router.get("/orders")
async def orders(request: Request, shop: ShopDep, visitor: VisitorDep) -> Response:
    admin = require_admin(visitor, request)
    try:
        found = (await shop.backends.orders(admin.access_token))[:50]
    except UpstreamUnavailable:
        found = None
    return render(shop, request, visitor, "admin/orders.html", orders=found)


@router.get("/orders/{order_id}")
async def order(order_id: str, request: Request, shop: ShopDep,
                visitor: VisitorDep) -> Response:
    admin = require_admin(visitor, request)
    try:
        uuid.UUID(order_id)
    except ValueError:
        return render(shop, request, visitor, "not_found.html", 404, what="order")
    found = await shop.backends.order(admin.access_token, order_id)
    if found is None:
        return render(shop, request, visitor, "not_found.html", 404, what="order")
    saga: dict[str, Any] | None
    try:
        saga, shipment = await asyncio.gather(shop.backends.saga(admin.access_token, order_id),
                                              shop.backends.shipment(admin.access_token,
                                                                     order_id))
    except UpstreamUnavailable:
        saga, shipment = None, None
    console = shop.settings.console_url.rstrip("/")
    trace_id = (saga or {}).get("trace_id")
    trace_url = f"{console}/traces/{trace_id}" if console and trace_id else None
    return render(shop, request, visitor, "admin/order.html", order=found, saga=saga,
                  shipment=shipment, trace_url=trace_url)
