"""The cart service's FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from chassis.auth import Principal, require_role
from chassis.deps import Ctx, CurrentPrincipal, Uow
from chassis.openapi import responds
from fastapi import Depends

from cart.adapters.upstream import Upstreams


async def get_upstreams(ctx: Ctx) -> Upstreams:
    upstreams: Upstreams = ctx.state["upstreams"]
    return upstreams


@responds(403, "The token lacks the customer role")
async def customer_principal(principal: CurrentPrincipal) -> Principal:
    """A cart is a customer's: the role is required, and the subject picks the cart."""
    return require_role(principal, "customer")


UpstreamsDep = Annotated[Upstreams, Depends(get_upstreams)]
Customer = Annotated[Principal, Depends(customer_principal)]

__all__ = ["Customer", "Uow", "UpstreamsDep"]
