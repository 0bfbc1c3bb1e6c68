"""The cart service's FastAPI dependencies, as Annotated aliases, and the wiring they read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, TypeAlias

from chassis.app import ServiceContext
from chassis.auth import Principal, require_role
from chassis.deps import CurrentPrincipal, Uow, get_ctx
from chassis.openapi import responds
from fastapi import Depends

from cart.adapters.upstream import Upstreams
from cart.settings import CartSettings


@dataclass(frozen=True, slots=True)
class CartWiring:
    """What ``bootstrap`` builds for the handlers (ADR 0025)."""

    upstreams: Upstreams  # the app's one client for catalog and orders


CartContext: TypeAlias = ServiceContext[CartSettings, CartWiring]
Context = Annotated[CartContext, Depends(get_ctx)]


async def get_upstreams(ctx: Context) -> Upstreams:
    return ctx.wiring.upstreams


@responds(403, "The token lacks the customer role")
async def customer_principal(principal: CurrentPrincipal) -> Principal:
    """A cart is a customer's: the role is required, and the subject picks the cart."""
    return require_role(principal, "customer")


UpstreamsDep = Annotated[Upstreams, Depends(get_upstreams)]
Customer = Annotated[Principal, Depends(customer_principal)]

__all__ = ["Customer", "Uow", "UpstreamsDep"]
