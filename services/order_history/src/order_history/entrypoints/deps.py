"""The order_history service's FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from chassis.deps import Ctx, CurrentPrincipal, Uow
from fastapi import Depends

from order_history.settings import OrderHistorySettings


async def get_settings(ctx: Ctx) -> OrderHistorySettings:
    settings = ctx.settings
    assert isinstance(settings, OrderHistorySettings)
    return settings


Settings = Annotated[OrderHistorySettings, Depends(get_settings)]

__all__ = ["CurrentPrincipal", "Settings", "Uow"]
