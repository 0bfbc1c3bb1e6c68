"""The storefront's FastAPI dependencies, as Annotated aliases, and the page helpers every
route uses (render with the visitor's cookie, redirect, require a signed-in customer)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeAlias
from urllib.parse import quote

from chassis.app import ServiceContext
from chassis.db import UnitOfWork
from chassis.deps import get_ctx
from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from starlette.responses import RedirectResponse, Response

from storefront.adapters.backends import Backends
from storefront.adapters.identity import IdentityClient
from storefront.service_layer.sessions import COOKIE, Customer, Sessions, Visitor
from storefront.settings import StorefrontSettings

# Pages run only our own scripts and styles; nothing may frame them; forms post only here.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


@dataclass(frozen=True, slots=True)
class Shop:
    """The storefront's wiring (ADR 0025): what ``bootstrap`` builds for every page."""

    settings: StorefrontSettings
    backends: Backends
    identity: IdentityClient
    sessions: Sessions
    templates: Jinja2Templates
    units: Callable[[], UnitOfWork]

    def uow(self) -> UnitOfWork:
        return self.units()


StorefrontContext: TypeAlias = ServiceContext[StorefrontSettings, Shop]
Context = Annotated[StorefrontContext, Depends(get_ctx)]


async def get_shop(ctx: Context) -> Shop:
    return ctx.wiring


def shop_of(request: Request) -> Shop:
    """The wiring where FastAPI's dependencies do not reach: the exception handlers."""
    ctx: StorefrontContext = request.app.state.ctx
    return ctx.wiring


ShopDep = Annotated[Shop, Depends(get_shop)]


async def get_visitor(request: Request, shop: ShopDep) -> Visitor:
    return await shop.sessions.visitor(request.cookies.get(COOKIE))


VisitorDep = Annotated[Visitor, Depends(get_visitor)]


class SignInRequired(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class AdminRequired(Exception):
    pass


def require_customer(visitor: Visitor, request: Request) -> Customer:
    if visitor.customer is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    return visitor.customer


def require_admin(visitor: Visitor, request: Request) -> Customer:
    customer = require_customer(visitor, request)
    if not customer.is_admin:
        raise AdminRequired()
    return customer


def with_cookie(response: Response, visitor: Visitor, settings: StorefrontSettings) -> Response:
    if visitor.fresh_cookie:
        response.set_cookie(COOKIE, visitor.cookie, max_age=settings.session_idle_s,
                            httponly=True, secure=settings.cookie_secure, samesite="lax",
                            path="/")
    return response


def page_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    # Every page carries a CSRF token tied to the browser's cookie, and many one person's
    # data: no shared cache may keep them.
    response.headers["Cache-Control"] = "no-store"
    return response


def render(shop: Shop, request: Request, visitor: Visitor, template: str,
           status_code: int = 200, **context: Any) -> Response:
    response = shop.templates.TemplateResponse(
        request, template, {"visitor": visitor, "customer": visitor.customer,
                            "csrf": visitor.csrf, **context}, status_code=status_code)
    return page_headers(with_cookie(response, visitor, shop.settings))


def redirect(shop: Shop, visitor: Visitor, url: str) -> Response:
    return with_cookie(RedirectResponse(url, status_code=303), visitor, shop.settings)


def safe_next(url: str | None) -> str:
    """Only a path on this site: ``next=https://evil.example`` or ``//evil`` goes home."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    return url


def signin_url(next_url: str) -> str:
    return f"/signin?next={quote(next_url, safe='')}"


async def form_of(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}
