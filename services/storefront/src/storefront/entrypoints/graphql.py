"""GraphQL at ``/api/graphql`` (Strawberry): one round trip for clients that want one.

* Who is asking: a bearer token (checked like every service checks it) or the storefront's
  session cookie. Cart and orders need a customer; every call is made with the caller's own
  token, so the services' rules apply unchanged (another customer's order is "not found").
* Batching: per request, products are loaded through a DataLoader (one catalog call for a
  page of products, whatever asks for them: cart lines, order lines) and stock through
  another (one inventory call for all the SKUs a response needs).
* Limits: depth (``STOREFRONT_GRAPHQL_MAX_DEPTH``) and cost (``..._MAX_COST``, see
  graphql_cost) are checked before anything runs; a refused query gets a clear error.
* Cookie-authenticated mutations need the page's CSRF token in ``X-CSRF-Token``; queries
  are only ever read. No GraphiQL page: it would load its scripts from a CDN.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import strawberry
from chassis.auth import bearer_token
from chassis.http_client import UpstreamUnavailable
from fastapi import Request
from strawberry.dataloader import DataLoader
from strawberry.extensions import AddValidationRules, MaxAliasesLimiter, QueryDepthLimiter
from strawberry.fastapi import BaseContext, GraphQLRouter

from storefront.adapters.backends import Refused
from storefront.domain.model import format_money
from storefront.entrypoints.deps import Shop, ShopDep
from storefront.entrypoints.graphql_cost import cost_rule
from storefront.service_layer import checkout as checkout_flow
from storefront.service_layer.compose import availability_of
from storefront.service_layer.sessions import COOKIE, Customer


class Context(BaseContext):
    def __init__(self, shop: Shop, customer: Customer | None, cookie_auth: bool,
                 csrf_ok: bool) -> None:
        super().__init__()
        self.shop = shop
        self.customer = customer
        self.cookie_auth = cookie_auth
        self.csrf_ok = csrf_ok
        self.calls: dict[str, int] = {"catalog": 0, "inventory": 0}

        async def load_products(ids: list[str]) -> list[dict[str, Any] | None]:
            self.calls["catalog"] += 1
            found = await shop.backends.products_by_id(list(dict.fromkeys(ids)))
            return [found.get(i) for i in ids]

        async def load_stock(skus: list[str]) -> list[dict[str, Any] | Exception | None]:
            self.calls["inventory"] += 1
            try:
                found = await shop.backends.stock(list(dict.fromkeys(skus)))
            except UpstreamUnavailable as exc:
                return [exc for _ in skus]
            return [found.get(s, {}) for s in skus]

        async def load_categories(slugs: list[str]) -> list[dict[str, Any] | None]:
            self.calls["catalog"] += 1
            every = {str(c["slug"]): c for c in await shop.backends.categories()}
            return [every.get(s) for s in slugs]

        self.products = DataLoader(load_fn=load_products)
        self.categories = DataLoader(load_fn=load_categories)
        self.stock = DataLoader(load_fn=load_stock)

    def need_customer(self) -> Customer:
        if self.customer is None:
            raise GraphQLDenied("sign in first: this needs a customer's session or token")
        return self.customer

    def need_mutation_rights(self) -> Customer:
        customer = self.need_customer()
        if self.cookie_auth and not self.csrf_ok:
            raise GraphQLDenied("a mutation with the session cookie needs the page's CSRF "
                                "token in the X-CSRF-Token header")
        return customer


class GraphQLDenied(Exception):
    pass


@strawberry.type
class Money:
    amount: str
    currency: str

    @strawberry.field
    def formatted(self) -> str:
        return format_money(self.amount, self.currency)


def _money(doc: Any) -> Money | None:
    if not isinstance(doc, dict) or "amount" not in doc:
        return None
    return Money(amount=str(doc["amount"]), currency=str(doc.get("currency") or "KRW"))


@strawberry.type
class Availability:
    known: bool
    available: int | None
    label: str


@strawberry.type
class Product:
    id: strawberry.ID
    sku: str
    name: str
    description: str
    category: str
    price: Money | None
    status: str

    @strawberry.field
    async def availability(self, info: strawberry.Info[Context, None]) -> Availability:
        row = await info.context.stock.load(self.sku)
        stock = None if isinstance(row, Exception) else {self.sku: row} if row else {}
        a = availability_of(stock, self.sku)
        return Availability(known=a.known, available=a.available if a.known else None,
                            label=a.label)

    @strawberry.field
    async def category_details(self, info: strawberry.Info[Context, None]) -> Category | None:
        doc = await info.context.categories.load(self.category)
        return Category(slug=str(doc["slug"]), name=str(doc["name"])) if doc else None

    @strawberry.field
    def image_url(self) -> str:
        from urllib.parse import urlencode

        return "/img/product.svg?" + urlencode({"n": self.name, "c": self.category})


def _product(doc: dict[str, Any]) -> Product:
    return Product(id=strawberry.ID(str(doc["id"])), sku=str(doc["sku"]), name=str(doc["name"]),
                   description=str(doc.get("description") or ""),
                   category=str(doc.get("category") or ""), price=_money(doc.get("price")),
                   status=str(doc.get("status") or "active"))


@strawberry.type
class Category:
    slug: str
    name: str

    @strawberry.field
    async def products(self, info: strawberry.Info[Context, None], page: int = 1,
                       page_size: int = 12) -> ProductPage:
        return await _product_page(info, q=None, category=self.slug, page=page,
                                   page_size=page_size)


async def _product_page(info: strawberry.Info[Context, None], *, q: str | None,
                        category: str | None, page: int, page_size: int) -> ProductPage:
    if not 1 <= page <= 10_000 or not 1 <= page_size <= 100:
        raise GraphQLDenied("page is 1-10000 and pageSize 1-100")
    found = await info.context.shop.backends.products(q=q, category=category, page=page,
                                                      page_size=page_size)
    docs = found.get("items", [])
    for doc in docs:
        info.context.products.prime(str(doc["id"]), doc)
    return ProductPage(items=[_product(p) for p in docs], total=int(found.get("total", 0)),
                       page=page, page_size=page_size)


@strawberry.type
class ProductPage:
    items: list[Product]
    total: int
    page: int
    page_size: int


@strawberry.type
class CartLine:
    product_id: strawberry.ID
    name: str
    quantity: int
    unit_price: Money | None
    subtotal: Money | None
    available: bool

    @strawberry.field
    async def product(self, info: strawberry.Info[Context, None]) -> Product | None:
        doc = await info.context.products.load(str(self.product_id))
        return _product(doc) if doc else None


@strawberry.type
class Cart:
    items: list[CartLine]
    total: Money | None


def _cart(doc: dict[str, Any]) -> Cart:
    return Cart(items=[CartLine(product_id=strawberry.ID(str(i["product_id"])),
                                name=str(i.get("name", "")), quantity=int(i["quantity"]),
                                unit_price=_money(i.get("unit_price")),
                                subtotal=_money(i.get("subtotal")),
                                available=bool(i.get("available", True)))
                       for i in doc.get("items", [])],
                total=_money(doc.get("total")))


@strawberry.type
class OrderLine:
    product_id: strawberry.ID
    name: str
    quantity: int
    unit_price: Money | None

    @strawberry.field
    async def product(self, info: strawberry.Info[Context, None]) -> Product | None:
        doc = await info.context.products.load(str(self.product_id))
        return _product(doc) if doc else None


@strawberry.type
class Payment:
    status: str | None
    amount_captured: Money | None
    amount_refunded: Money | None


@strawberry.type
class Shipment:
    status: str
    tracking_number: str | None


@strawberry.type
class Order:
    id: strawberry.ID
    status: str
    reason: str | None
    total: Money | None
    items: list[OrderLine]
    created_at: str | None

    @strawberry.field
    async def payment(self, info: strawberry.Info[Context, None]) -> Payment | None:
        """From the order history (payments' events); null while it has not caught up."""
        customer = info.context.need_customer()
        view = await info.context.shop.backends.history(customer.access_token, str(self.id))
        if not view:
            return None
        return Payment(status=view.get("payment_status"),
                       amount_captured=_money(view.get("amount_captured")),
                       amount_refunded=_money(view.get("amount_refunded")))

    @strawberry.field
    async def shipment(self, info: strawberry.Info[Context, None]) -> Shipment | None:
        customer = info.context.need_customer()
        found = await info.context.shop.backends.shipment(customer.access_token, str(self.id))
        if not found:
            return None
        return Shipment(status=str(found["status"]),
                        tracking_number=found.get("tracking_number"))


def _order(doc: dict[str, Any]) -> Order:
    return Order(id=strawberry.ID(str(doc["id"])), status=str(doc["status"]),
                 reason=doc.get("reason"), total=_money(doc.get("total")),
                 items=[OrderLine(product_id=strawberry.ID(str(i["product_id"])),
                                  name=str(i.get("name", "")), quantity=int(i["quantity"]),
                                  unit_price=_money(i.get("unit_price")))
                        for i in doc.get("items", [])],
                 created_at=doc.get("created_at"))


def _refused(exc: Refused) -> GraphQLDenied:
    return GraphQLDenied(f"{exc.service} refused: {exc.detail}")


@strawberry.type
class Query:
    @strawberry.field
    async def products(self, info: strawberry.Info[Context, None], q: str | None = None,
                       category: str | None = None, page: int = 1,
                       page_size: int = 12) -> ProductPage:
        return await _product_page(info, q=q, category=category, page=page,
                                   page_size=page_size)

    @strawberry.field
    async def categories(self, info: strawberry.Info[Context, None]) -> list[Category]:
        return [Category(slug=str(c["slug"]), name=str(c["name"]))
                for c in await info.context.shop.backends.categories()]

    @strawberry.field
    async def product(self, info: strawberry.Info[Context, None],
                      id: strawberry.ID) -> Product | None:
        try:
            uuid.UUID(str(id))
        except ValueError:
            return None
        doc = await info.context.products.load(str(id))
        return _product(doc) if doc else None

    @strawberry.field
    async def cart(self, info: strawberry.Info[Context, None]) -> Cart:
        customer = info.context.need_customer()
        return _cart(await info.context.shop.backends.cart(customer.access_token))

    @strawberry.field
    async def my_orders(self, info: strawberry.Info[Context, None],
                        first: int = 10) -> list[Order]:
        """The caller's orders, newest first (the ``first`` 1-50), as orders lists them for
        the caller's token."""
        customer = info.context.need_customer()
        if not 1 <= first <= 50:
            raise GraphQLDenied("first is 1-50")
        found = await info.context.shop.backends.orders(customer.access_token)
        return [_order(o) for o in found[:first]]

    @strawberry.field
    async def order(self, info: strawberry.Info[Context, None],
                    id: strawberry.ID) -> Order | None:
        customer = info.context.need_customer()
        try:
            uuid.UUID(str(id))
        except ValueError:
            return None
        found = await info.context.shop.backends.order(customer.access_token, str(id))
        return _order(found) if found else None


@strawberry.input
class AddressInput:
    name: str
    line1: str
    line2: str | None = None
    city: str
    postal_code: str
    country: str
    phone: str | None = None


@strawberry.type
class PlacedOrder:
    id: strawberry.ID
    status: str


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def set_cart_item(self, info: strawberry.Info[Context, None],
                            product_id: strawberry.ID, quantity: int) -> Cart:
        """Add a product or set its quantity (1-100); 0 removes it."""
        customer = info.context.need_mutation_rights()
        if not 0 <= quantity <= 100:
            raise GraphQLDenied("quantity is 0-100")
        backends = info.context.shop.backends
        try:
            if quantity == 0:
                await backends.remove_cart_item(customer.access_token, str(product_id))
            else:
                await backends.set_cart_item(customer.access_token, str(product_id), quantity)
        except Refused as exc:
            raise _refused(exc) from exc
        return _cart(await backends.cart(customer.access_token))

    @strawberry.mutation
    async def remove_cart_item(self, info: strawberry.Info[Context, None],
                               product_id: strawberry.ID) -> Cart:
        customer = info.context.need_mutation_rights()
        backends = info.context.shop.backends
        try:
            await backends.remove_cart_item(customer.access_token, str(product_id))
        except Refused as exc:
            raise _refused(exc) from exc
        return _cart(await backends.cart(customer.access_token))

    @strawberry.mutation
    async def checkout(self, info: strawberry.Info[Context, None], checkout_key: str,
                       card_number: str, address_id: strawberry.ID | None = None,
                       address: AddressInput | None = None) -> PlacedOrder:
        """Place the cart as an order. ``checkoutKey`` (32 hex digits, the client's own)
        makes it idempotent: the same key again is the same order."""
        customer = info.context.need_mutation_rights()
        if (address_id is None) == (address is None):
            raise GraphQLDenied("give exactly one of addressId or address")
        form = {"checkout_key": checkout_key, "card_number": card_number,
                "address_id": str(address_id) if address_id else "new"}
        if address is not None:
            form.update({k: v for k, v in strawberry.asdict(address).items() if v})
        try:
            parsed = checkout_flow.CheckoutForm.parse(form)
            order_id = await checkout_flow.place_order(info.context.shop.uow,
                                                       info.context.shop.backends, customer,
                                                       parsed)
        except checkout_flow.CheckoutError as exc:
            raise GraphQLDenied(exc.message) from exc
        found = await info.context.shop.backends.order(customer.access_token, order_id)
        return PlacedOrder(id=strawberry.ID(order_id),
                           status=str((found or {}).get("status", "PENDING")))


def schema(max_depth: int, max_cost: int) -> strawberry.Schema:
    return strawberry.Schema(
        query=Query, mutation=Mutation,
        extensions=[QueryDepthLimiter(max_depth=max_depth), MaxAliasesLimiter(max_alias_count=30),
                    AddValidationRules([cost_rule(max_cost)])])


@dataclass
class _Auth:
    customer: Customer | None
    cookie_auth: bool
    csrf_ok: bool


async def _auth(request: Request, shop: Shop) -> _Auth:
    header = request.headers.get("authorization")
    if header:
        # A bad token is a 401 problem (the chassis' answer), as at every service.
        token = bearer_token(header)
        principal = await request.app.state.ctx.verifier.verify(token)
        return _Auth(Customer(id=principal.subject, email=principal.email or "", name="",
                              roles=principal.roles, access_token=token), False, True)
    visitor = await shop.sessions.visitor(request.cookies.get(COOKIE))
    csrf = request.headers.get("x-csrf-token")
    return _Auth(visitor.customer, True, shop.sessions.csrf_ok(visitor, csrf))


def router(max_depth: int, max_cost: int) -> GraphQLRouter[Context, None]:
    async def context(request: Request, shop: ShopDep) -> Context:
        auth = await _auth(request, shop)
        return Context(shop, auth.customer, auth.cookie_auth, auth.csrf_ok)

    return GraphQLRouter(schema(max_depth, max_cost), path="/api/graphql", graphql_ide=None,
                         allow_queries_via_get=False, context_getter=context,
                         include_in_schema=False)
