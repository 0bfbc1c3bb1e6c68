"""FastAPI dependencies every service shares, as ``Annotated`` aliases.

Every dependency is ``async def``, in the services too: FastAPI runs a plain ``def`` one in
its thread pool, a thread hand-off per dependency per request (four per order placed) for
work that never blocks.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from chassis.app import ServiceContext
from chassis.auth import Principal, bearer_token, require_role
from chassis.db import UnitOfWork


async def get_ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ServiceContext, Depends(get_ctx)]


async def get_uow(ctx: Ctx) -> UnitOfWork:
    return ctx.require_db().unit_of_work()


Uow = Annotated[UnitOfWork, Depends(get_uow)]


async def current_principal(
    ctx: Ctx, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> Principal:
    token = bearer_token(authorization)
    assert ctx.verifier is not None
    return await ctx.verifier.verify(token)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def admin_principal(principal: CurrentPrincipal) -> Principal:
    return require_role(principal, "admin")


AdminPrincipal = Annotated[Principal, Depends(admin_principal)]
