"""Wiring of the storefront: ``create_app`` for the process, ``bootstrap`` for start-up
(the service client every page's calls go through, the session store, the templates)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import structlog
from chassis.app import create_service_app
from chassis.auth import KeySource
from chassis.http_client import ServiceClient, UpstreamUnavailable
from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from storefront.adapters.backends import Backends, Urls
from storefront.adapters.identity import IdentityClient
from storefront.domain.model import format_money, money_of
from storefront.entrypoints import graphql, pages, pages_admin
from storefront.entrypoints.deps import (
    AdminRequired,
    Shop,
    SignInRequired,
    StorefrontContext,
    page_headers,
    redirect,
    render,
    shop_of,
    signin_url,
)
from storefront.service_layer.sessions import Sessions, Visitor
from storefront.settings import StorefrontSettings

log = structlog.get_logger("storefront.app")
PACKAGE = Path(__file__).resolve().parent
MIGRATIONS_DIR = PACKAGE.parents[1] / "migrations"


def templates() -> Jinja2Templates:
    t = Jinja2Templates(directory=str(PACKAGE / "templates"))
    t.env.filters["money"] = money_of
    t.env.filters["won"] = format_money
    t.env.globals["htmx"] = "/static/vendor/htmx-2.0.11.min.js"
    return t


def build_shop(ctx: StorefrontContext, settings: StorefrontSettings) -> Shop:
    client = ServiceClient(ctx.http_session, ctx.resolver, timeout_s=settings.upstream_timeout_s,
                           retries=settings.upstream_retries, service_identity="storefront",
                           registry=ctx.metrics.registry)
    urls = Urls(identity=settings.identity_url, catalog=settings.catalog_url,
                inventory=settings.inventory_url, cart=settings.cart_url,
                orders=settings.orders_url, payments=settings.payments_url,
                shipping=settings.shipping_url, history=settings.history_url)
    identity = IdentityClient(client, settings.identity_url,
                              timeout_s=settings.identity_timeout_s,
                              client_id=settings.oauth_client_id,
                              client_secret=settings.oauth_client_secret.get_secret_value())
    secret = settings.session_secret.get_secret_value().encode() or secrets.token_bytes(32)
    sessions = Sessions(lambda: ctx.require_db().unit_of_work(), identity, secret=secret,
                        idle=timedelta(seconds=settings.session_idle_s))
    return Shop(settings=settings, backends=Backends(client, urls,
                                                      orders_timeout_s=settings.orders_timeout_s),
                identity=identity, sessions=sessions, templates=templates(),
                units=lambda: ctx.require_db().unit_of_work())


@asynccontextmanager
async def bootstrap(ctx: StorefrontContext) -> AsyncIterator[None]:
    ctx.wire(build_shop(ctx, ctx.settings))
    yield


def _install_page_errors(app: FastAPI) -> None:
    async def shop_and_visitor(request: Request) -> tuple[Shop, Visitor]:
        shop = shop_of(request)
        visitor = await shop.sessions.visitor(request.cookies.get("sf_sid"))
        return shop, visitor

    async def sign_in_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        shop, visitor = await shop_and_visitor(request)
        return redirect(shop, visitor, signin_url(exc.next_url))

    async def admin_required(request: Request, exc: Exception) -> Response:
        shop, visitor = await shop_and_visitor(request)
        return render(shop, request, visitor, "error.html", 403,
                      title="Staff only", message="The back office is for shop staff.")

    async def csrf_refused(request: Request, exc: Exception) -> Response:
        shop, visitor = await shop_and_visitor(request)
        return render(shop, request, visitor, "error.html", 403,
                      title="This form has expired",
                      message="Go back, reload the page and send the form again.")

    async def unavailable(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, UpstreamUnavailable)
        log.info("page_unavailable", path=request.url.path, detail=str(exc)[:200])
        shop = shop_of(request)
        # The visitor's session is not looked up: the database may be what is down, and
        # this page needs no one's data.
        visitor = shop.sessions.new_visitor()
        visitor.fresh_cookie = False  # keep the browser's cookie as it is
        response = render(shop, request, visitor, "error.html", 503,
                          title="This part of the shop is unavailable",
                          message="We cannot reach it right now. Please try again in a "
                                  "moment.")
        response.headers["Retry-After"] = "5"
        return page_headers(response)

    app.add_exception_handler(SignInRequired, sign_in_required)
    app.add_exception_handler(AdminRequired, admin_required)
    app.add_exception_handler(pages.CsrfRefused, csrf_refused)
    app.add_exception_handler(UpstreamUnavailable, unavailable)


def create_app(settings: StorefrontSettings | None = None, *,
               key_source: Callable[[StorefrontContext], KeySource] | None = None) -> FastAPI:
    settings = settings or StorefrontSettings()
    app = create_service_app(
        settings, routers=[pages.router, pages_admin.router,
                           graphql.router(settings.graphql_max_depth, settings.graphql_max_cost)],
        bootstrap=bootstrap,
        key_source=key_source,
        description="The web shop and back office: pages and GraphQL composed from the "
                    "services.")
    app.mount("/static", StaticFiles(directory=str(PACKAGE / "static")), name="static")
    _install_page_errors(app)
    return app
