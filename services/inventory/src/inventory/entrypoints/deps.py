"""The inventory's FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated, TypeAlias

from chassis.app import ServiceContext
from chassis.deps import AdminPrincipal, Uow, get_ctx
from fastapi import Depends

from inventory.domain.model import Policy
from inventory.settings import InventorySettings

# The service's context as create_app typed it: its settings, no wiring of its own.
InventoryContext: TypeAlias = ServiceContext[InventorySettings, None]
Context = Annotated[InventoryContext, Depends(get_ctx)]


async def get_settings(ctx: Context) -> InventorySettings:
    return ctx.settings


Settings = Annotated[InventorySettings, Depends(get_settings)]


async def get_policy(settings: Settings) -> Policy:
    return settings.policy()


Rules = Annotated[Policy, Depends(get_policy)]

__all__ = ["AdminPrincipal", "Rules", "Settings", "Uow"]
