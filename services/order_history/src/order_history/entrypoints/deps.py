"""The order_history service's FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated, TypeAlias

from chassis.app import ServiceContext
from chassis.deps import CurrentPrincipal, Uow, get_ctx
from fastapi import Depends

from order_history.settings import OrderHistorySettings

# The service's context as create_app typed it: its settings, no wiring of its own.
OrderHistoryContext: TypeAlias = ServiceContext[OrderHistorySettings, None]
Context = Annotated[OrderHistoryContext, Depends(get_ctx)]


async def get_settings(ctx: Context) -> OrderHistorySettings:
    return ctx.settings


Settings = Annotated[OrderHistorySettings, Depends(get_settings)]

__all__ = ["CurrentPrincipal", "Settings", "Uow"]
