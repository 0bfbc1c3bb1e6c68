"""The payments' FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from chassis.deps import AdminPrincipal, Ctx, CurrentPrincipal, Uow
from fastapi import Depends

from payments.service_layer.handlers import Provider


async def get_provider(ctx: Ctx) -> Provider:
    provider: Provider = ctx.state["provider"]
    return provider


ProviderDep = Annotated[Provider, Depends(get_provider)]

__all__ = ["AdminPrincipal", "CurrentPrincipal", "ProviderDep", "Uow"]
