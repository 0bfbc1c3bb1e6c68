"""The shop's HTTP API under ``/shop``, its health and metrics, and the wiring.

``create_app(settings)`` builds everything inside the lifespan: nothing is created at
import. Auth is the shop's own: ``POST /shop/login`` returns an opaque token, also set as
the ``legacy_session`` cookie; either the cookie or ``Authorization: Bearer <token>``
authenticates later calls. With ``LEGACY_JWKS_URL`` set, a bearer JWT issued by the
services' identity provider is accepted too (``legacy.tokens``, ADR 0032).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from legacy import shop
from legacy.domain import Problem
from legacy.provider import PaymentProvider
from legacy.settings import Settings
from legacy.telemetry import Metrics, Observe, configure_tracing
from legacy.tokens import ServiceTokens, looks_like_jwt

COOKIE = "legacy_session"
PROBLEM = "application/problem+json"


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def no_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold U+0000: refuse it here rather than fail in the INSERT.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class Registration(Body):
    email: str = Field(max_length=254)
    password: str = Field(max_length=128)
    name: str = Field(min_length=1, max_length=200)


class Login(Body):
    email: str = Field(max_length=254)
    password: str = Field(max_length=128)


class AddressIn(Body):
    recipient: str = Field(min_length=1, max_length=200)
    line1: str = Field(min_length=1, max_length=300)
    city: str = Field(min_length=1, max_length=100)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(default="KR", pattern=r"^[A-Z]{2}$")


class CartLineIn(Body):
    quantity: int = Field(ge=1, le=99)


class Item(Body):
    product_id: int = Field(ge=1, le=2**62)
    quantity: int = Field(ge=1, le=99)


class CheckoutIn(Body):
    address_id: int = Field(ge=1, le=2**62)
    card_number: str = Field(min_length=12, max_length=19, pattern=r"^[0-9]+$")
    # "Buy now": these products instead of the cart's.
    items: list[Item] | None = Field(default=None, min_length=1, max_length=50)


class CategoryIn(Body):
    name: str = Field(min_length=1, max_length=100)
    parent_id: int | None = Field(default=None, ge=1, le=2**62)


class ProductIn(Body):
    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    category_id: int = Field(ge=1, le=2**62)
    price: Decimal = Field(gt=0, max_digits=12, decimal_places=2)


class ProductEdit(Body):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    category_id: int | None = Field(default=None, ge=1, le=2**62)
    price: Decimal | None = Field(default=None, gt=0, max_digits=12, decimal_places=2)
    active: bool | None = None


class StockIn(Body):
    on_hand: int = Field(ge=0, le=10_000_000)


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "title": title, "status": status,
                         "detail": detail, **extra}, status_code=status, media_type=PROBLEM)


class Shop:
    """What a request needs: the engine, the provider client, the settings, the metrics."""

    def __init__(self, settings: Settings, engine: AsyncEngine, provider: PaymentProvider,
                 metrics: Metrics) -> None:
        self.settings, self.engine, self.provider, self.metrics = (settings, engine, provider,
                                                                   metrics)
        self.passwords = settings.passwords()
        self.service_tokens = (ServiceTokens(settings.jwks_url, issuer=settings.jwt_issuer,
                                             audience=settings.jwt_audience)
                               if settings.jwks_url else None)


def the_shop(request: Request) -> Shop:
    return request.app.state.shop  # type: ignore[no-any-return]


ShopDep = Annotated[Shop, Depends(the_shop)]
PageQ = Annotated[int, Query(ge=1, le=100_000)]
SizeQ = Annotated[int, Query(ge=1, le=100)]


def token_of(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.cookies.get(COOKIE)


async def current_customer(request: Request, s: ShopDep) -> shop.Customer:
    token = token_of(request)
    if token and s.service_tokens is not None and looks_like_jwt(token):
        # Signed in at the services (identity moved for this customer): the same customer,
        # known here by the UUID the services give the account.
        account = await s.service_tokens.subject(token)
        customer = await shop.customer_by_services_id(s.engine, account)
        if customer is None:
            raise Problem(401, "Not signed in", "this account is not known to the shop yet")
        return customer
    customer = await shop.customer_of(s.engine, token) if token else None
    if customer is None:
        raise Problem(401, "Not signed in", "log in with POST /shop/login")
    return customer


async def current_admin(customer: Annotated[shop.Customer, Depends(current_customer)]
                        ) -> shop.Customer:
    if not customer.is_admin:
        raise Problem(403, "Admins only", "this needs an admin account")
    return customer


CustomerDep = Annotated[shop.Customer, Depends(current_customer)]
AdminDep = Annotated[shop.Customer, Depends(current_admin)]


def routes(app: FastAPI) -> None:
    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready", include_in_schema=False)
    async def ready(s: ShopDep) -> JSONResponse:
        try:
            async with s.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure to reach the database means not ready
            return JSONResponse({"status": "down", "checks": {"database": str(exc)[:200]}},
                                status_code=503)
        return JSONResponse({"status": "ok", "checks": {"database": "ok"}})

    @app.get("/metrics", include_in_schema=False)
    async def metrics(s: ShopDep) -> PlainTextResponse:
        return PlainTextResponse(s.metrics.render(),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/shop/register", status_code=201)
    async def register(body: Registration, s: ShopDep) -> dict[str, Any]:
        c = await shop.register(s.engine, s.passwords, body.email, body.password, body.name)
        return {"id": c.id, "email": c.email, "name": c.name}

    @app.post("/shop/login")
    async def login(body: Login, s: ShopDep, response: Response) -> dict[str, Any]:
        token = await shop.login(s.engine, s.passwords, body.email, body.password,
                                 s.settings.session_ttl_s)
        response.set_cookie(COOKIE, token, max_age=s.settings.session_ttl_s, httponly=True,
                            samesite="lax", path="/shop")
        return {"token": token, "token_type": "session", "expires_in": s.settings.session_ttl_s}

    @app.post("/shop/logout", status_code=204)
    async def logout(request: Request, s: ShopDep, _: CustomerDep) -> Response:
        token = token_of(request)
        if token:
            await shop.logout(s.engine, token)
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/shop")
        return response

    @app.get("/shop/me")
    async def me(c: CustomerDep) -> dict[str, Any]:
        return {"id": c.id, "email": c.email, "name": c.name, "is_admin": c.is_admin,
                # The account's UUID on the services' side (ADR 0032), for the ACL.
                "services_id": str(c.services_id) if c.services_id else None}

    @app.get("/shop/addresses")
    async def list_addresses(c: CustomerDep, s: ShopDep) -> list[dict[str, Any]]:
        return await shop.addresses(s.engine, c.id)

    @app.post("/shop/addresses", status_code=201)
    async def add_address(body: AddressIn, c: CustomerDep, s: ShopDep) -> dict[str, Any]:
        return await shop.add_address(s.engine, c.id, body.model_dump())

    @app.get("/shop/categories")
    async def categories(s: ShopDep) -> list[dict[str, Any]]:
        return await shop.categories(s.engine)

    @app.get("/shop/products")
    async def products(s: ShopDep, page: PageQ = 1, page_size: SizeQ = 20,
                       q: Annotated[str | None, Query(max_length=100,
                                                      pattern=r"^[^\x00]*$")] = None,
                       category: Annotated[int | None, Query(ge=1, le=2**62)] = None
                       ) -> dict[str, Any]:
        return await shop.products(s.engine, q=q, category=category, page=page,
                                   page_size=page_size)

    @app.get("/shop/products/{product_id}")
    async def product(product_id: int, s: ShopDep) -> dict[str, Any]:
        return await shop.product(s.engine, _id(product_id))

    @app.get("/shop/cart")
    async def get_cart(c: CustomerDep, s: ShopDep) -> dict[str, Any]:
        return await shop.cart(s.engine, c.id, s.settings.currency)

    @app.put("/shop/cart/lines/{product_id}")
    async def put_line(product_id: int, body: CartLineIn, c: CustomerDep,
                       s: ShopDep) -> dict[str, Any]:
        await shop.set_cart_line(s.engine, c.id, _id(product_id), body.quantity)
        return await shop.cart(s.engine, c.id, s.settings.currency)

    @app.delete("/shop/cart/lines/{product_id}")
    async def delete_line(product_id: int, c: CustomerDep, s: ShopDep) -> dict[str, Any]:
        await shop.remove_cart_line(s.engine, c.id, _id(product_id))
        return await shop.cart(s.engine, c.id, s.settings.currency)

    @app.post("/shop/checkout", status_code=201)
    async def checkout(body: CheckoutIn, c: CustomerDep, s: ShopDep, response: Response,
                       idempotency_key: Annotated[str | None, Header(
                           alias="Idempotency-Key", min_length=1, max_length=200)] = None
                       ) -> dict[str, Any]:
        try:
            result = await shop.checkout(
                s.engine, s.provider, c, address_id=body.address_id,
                card_number=body.card_number,
                idempotency_key=idempotency_key or str(uuid.uuid4()),
                items=[(i.product_id, i.quantity) for i in body.items] if body.items else None,
                currency=s.settings.currency)
        except Problem as exc:
            s.metrics.checkouts.labels({402: "declined", 409: "out_of_stock"}.get(
                exc.status, "refused")).inc()
            raise
        s.metrics.checkouts.labels("replayed" if result.replayed else "paid").inc()
        if result.replayed:
            response.status_code = 200
        return result.order

    @app.get("/shop/orders")
    async def list_orders(c: CustomerDep, s: ShopDep, page: PageQ = 1,
                          page_size: SizeQ = 20) -> dict[str, Any]:
        return await shop.orders(s.engine, c.id, page=page, page_size=page_size)

    @app.get("/shop/orders/{order_id}")
    async def get_order(order_id: int, c: CustomerDep, s: ShopDep) -> dict[str, Any]:
        return await shop.order(s.engine, c, _id(order_id))

    @app.post("/shop/admin/categories", status_code=201)
    async def create_category(body: CategoryIn, _: AdminDep, s: ShopDep) -> dict[str, Any]:
        return await shop.create_category(s.engine, body.name, body.parent_id)

    @app.post("/shop/admin/products", status_code=201)
    async def create_product(body: ProductIn, _: AdminDep, s: ShopDep) -> dict[str, Any]:
        return await shop.create_product(s.engine, {**body.model_dump(),
                                                    "currency": s.settings.currency})

    @app.patch("/shop/admin/products/{product_id}")
    async def edit_product(product_id: int, body: ProductEdit, _: AdminDep,
                           s: ShopDep) -> dict[str, Any]:
        return await shop.edit_product(s.engine, _id(product_id),
                                       body.model_dump(exclude_unset=True))

    @app.put("/shop/admin/stock/{product_id}")
    async def put_stock(product_id: int, body: StockIn, _: AdminDep,
                        s: ShopDep) -> dict[str, Any]:
        return await shop.set_stock(s.engine, _id(product_id), body.on_hand)


def _id(value: int) -> int:
    # Path ids go into bigint columns: out of range is "no such thing", not a 500.
    if not 1 <= value < 2**63:
        raise Problem(404, "Not found", f"{value} is not an id")
    return value


def errors(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def on_problem(_: Request, exc: Problem) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, "Invalid request", "the request does not match the API",
                       errors=[{"loc": list(e.get("loc", ())), "msg": e.get("msg")}
                               for e in exc.errors()][:20])

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail))


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tracer_provider = configure_tracing(settings.instance_id, settings.otlp_endpoint)
        engine = create_async_engine(settings.database_url, pool_size=10, max_overflow=10,
                                     pool_pre_ping=True)
        provider = PaymentProvider(settings.provider_url, settings.provider_token,
                                   settings.provider_timeout_s)
        app.state.shop = Shop(settings, engine, provider, metrics)
        app.state.tracer = tracer_provider.get_tracer("legacy")
        try:
            yield
        finally:
            await provider.close()
            await engine.dispose()
            tracer_provider.shutdown()

    metrics = Metrics()
    app = FastAPI(title="legacy shop", version="1", lifespan=lifespan,
                  docs_url="/shop/docs", openapi_url="/shop/openapi.json", redoc_url=None)
    routes(app)
    errors(app)
    app.add_middleware(Observe, metrics=metrics)
    return app
