"""Catalog HTTP API under /api/catalog. Reads are public and cacheable; writes need admin."""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Any

import orjson
from chassis.errors import Unprocessable
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import Response as RawResponse

from catalog.entrypoints.deps import AdminPrincipal, RecordWriter, Settings, Uow
from catalog.entrypoints.schemas import (
    SPACE,
    CategoryIn,
    CategoryOut,
    CategoryRecordIn,
    ProductIn,
    ProductOut,
    ProductPageOut,
    ProductPatch,
    ProductRecordIn,
    category_json,
    product_json,
)
from catalog.service_layer import handlers

router = APIRouter(prefix="/api/catalog", tags=["catalog"])

# Products one listing can name by id: a page's most (an order has at most 50 lines).
MAX_IDS = 100
_UUID = "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
# What _product_ids takes, as the schema says it: product ids between commas and whitespace
# (at most MAX_IDS: the field's maxLength has no room for more).
IDS_PATTERN = rf"^[{SPACE},]*{_UUID}(?:[{SPACE}]*,[{SPACE},]*{_UUID})*[{SPACE},]*$"
DEFAULT_PAGE_SIZE = 20


def _cacheable(request: Request, body: dict[str, Any] | list[Any], max_age: int,
               etag: str | None = None) -> RawResponse:
    """JSON with an ETag; 304 when the client already has this version."""
    payload = orjson.dumps(body)
    etag = etag or f'W/"{hashlib.blake2b(payload, digest_size=12).hexdigest()}"'
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={max_age}"}
    inm = request.headers.get("if-none-match")
    if inm and (inm.strip() == "*" or etag in (t.strip() for t in inm.split(","))):
        return RawResponse(status_code=304, headers=headers)
    return RawResponse(payload, media_type="application/json", headers=headers)


@router.get("/products", response_model=ProductPageOut,
            summary="List and search products (public)")
async def list_products(
    request: Request, uow: Uow, settings: Settings,
    q: Annotated[str | None, Query(max_length=200, description="words to search for")] = None,
    category: Annotated[str | None, Query(max_length=63)] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    page_size: Annotated[int | None, Query(ge=1, le=100, description=(
        f"{DEFAULT_PAGE_SIZE} by default; with ids, as many as ids are named"))] = None,
    ids: Annotated[str | None, Query(max_length=MAX_IDS * 37,
                                     json_schema_extra={"pattern": IDS_PATTERN}, description=(
        f"only these products: up to {MAX_IDS} comma-separated product ids. Those not on "
        "sale (unknown or discontinued) are left out; all fit on the first page. One call "
        "prices a whole order."))] = None,
) -> RawResponse:
    wanted = _product_ids(ids) if ids is not None else None
    if page_size is None:
        page_size = len(wanted) if wanted else DEFAULT_PAGE_SIZE
    page_size = min(page_size, settings.max_page_size)
    found = await handlers.search_products(uow, q=q, category=category, page=page,
                                           page_size=page_size, ids=wanted)
    body = {"items": [product_json(p) for p in found.items], "total": found.total,
            "page": page, "page_size": page_size}
    return _cacheable(request, body, settings.read_max_age_s)


def _product_ids(ids: str) -> list[uuid.UUID]:
    parts = [p.strip() for p in ids.split(",") if p.strip()]
    if not 1 <= len(parts) <= MAX_IDS:
        raise Unprocessable(f"ids names 1-{MAX_IDS} products", reason="invalid_ids")
    try:
        return list(dict.fromkeys(uuid.UUID(p) for p in parts))
    except ValueError:
        raise Unprocessable("ids must be product ids (UUIDs), separated by commas",
                            reason="invalid_ids") from None


@router.get("/products/{product_id}", response_model=ProductOut, summary="One product (public)")
async def read_product(product_id: uuid.UUID, request: Request, uow: Uow,
                       settings: Settings) -> RawResponse:
    product = await handlers.get_product(uow, product_id)
    return _cacheable(request, product_json(product), settings.read_max_age_s, product.etag)


@router.get("/categories", response_model=dict[str, list[CategoryOut]],
            summary="All categories (public)")
async def list_categories(request: Request, uow: Uow, settings: Settings) -> RawResponse:
    found = await handlers.list_categories(uow)
    return _cacheable(request, {"items": [category_json(c) for c in found]},
                      settings.read_max_age_s)


@router.post("/products", status_code=201, response_model=ProductOut,
             responses={409: {"description": "a product with this SKU exists"}},
             summary="Create a product (admin)")
async def create_product(body: ProductIn, uow: Uow, _: AdminPrincipal,
                         response: Response) -> dict[str, Any]:
    product = await handlers.create_product(uow, handlers.NewProduct(
        sku=body.sku, name=body.name, description=body.description, category=body.category,
        price_amount=body.price.amount, price_currency=body.price.currency))
    response.headers["Location"] = f"/api/catalog/products/{product.id}"
    response.headers["ETag"] = product.etag
    return product_json(product)


@router.patch("/products/{product_id}", response_model=ProductOut,
              responses={412: {"description": "If-Match names another version"}},
              summary="Change a product (admin); If-Match guards against lost updates")
async def update_product(product_id: uuid.UUID, body: ProductPatch, uow: Uow, _: AdminPrincipal,
                         response: Response,
                         if_match: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    product = await handlers.update_product(uow, product_id, handlers.ProductChanges(
        name=body.name, description=body.description, category=body.category,
        price_amount=body.price.amount if body.price else None,
        price_currency=body.price.currency if body.price else None), if_match=if_match)
    response.headers["ETag"] = product.etag
    return product_json(product)


@router.delete("/products/{product_id}", status_code=204,
               summary="Discontinue a product (admin)")
async def delete_product(product_id: uuid.UUID, uow: Uow, _: AdminPrincipal) -> Response:
    await handlers.discontinue_product(uow, product_id)
    return Response(status_code=204)


@router.post("/categories", status_code=201, response_model=CategoryOut,
             responses={409: {"description": "a category with this slug exists"}},
             summary="Create a category (admin)")
async def create_category(body: CategoryIn, uow: Uow, _: AdminPrincipal) -> dict[str, Any]:
    return category_json(await handlers.create_category(uow, body.slug, body.name))


@router.put("/products/{product_id}", response_model=ProductOut,
            responses={201: {"description": "created under this id"},
                       409: {"description": "another product has this SKU"},
                       412: {"description": "If-Match names another version"}},
            summary="State a product whole under its id (admin, or the migration sync)")
async def record_product(product_id: uuid.UUID, body: ProductRecordIn, uow: Uow,
                         _: RecordWriter, response: Response,
                         if_match: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    # Idempotent: the record the catalog already holds changes nothing (same version, no
    # event), so a sync that replays after a crash applies nothing twice.
    done = await handlers.record_product(uow, product_id, handlers.ProductRecord(
        sku=body.sku, name=body.name, description=body.description, category=body.category,
        price_amount=body.price.amount, price_currency=body.price.currency,
        status=body.status), if_match=if_match)
    response.status_code = 201 if done.created else 200
    response.headers["ETag"] = done.product.etag
    return product_json(done.product)


# Not under /products/{id}: a discontinued (DELETEd) product stays readable here, which
# under the product's own path would read as a use after its deletion.
@router.get("/product-records/{product_id}", response_model=ProductOut,
            summary="A product as stored, discontinued too (admin, or the migration sync)")
async def read_product_record(product_id: uuid.UUID, uow: Uow, _: RecordWriter,
                              response: Response) -> dict[str, Any]:
    product = await handlers.get_product_record(uow, product_id)
    response.headers["ETag"] = product.etag
    response.headers["Cache-Control"] = "no-store"
    return product_json(product)


@router.put("/categories/{category_id}", response_model=CategoryOut,
            responses={409: {"description": "another category has this slug"}},
            summary="A category under an id the caller chose (admin, or the migration sync)")
async def record_category(category_id: uuid.UUID, body: CategoryRecordIn, uow: Uow,
                          _: RecordWriter) -> dict[str, Any]:
    return category_json(await handlers.record_category(uow, category_id, body.slug,
                                                        body.name))
