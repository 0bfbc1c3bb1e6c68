"""The inventory's FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from chassis.deps import AdminPrincipal, Ctx, Uow
from fastapi import Depends

from inventory.domain.model import Policy
from inventory.settings import InventorySettings


async def get_settings(ctx: Ctx) -> InventorySettings:
    settings = ctx.settings
    assert isinstance(settings, InventorySettings)
    return settings


Settings = Annotated[InventorySettings, Depends(get_settings)]


async def get_policy(settings: Settings) -> Policy:
    return settings.policy()


Rules = Annotated[Policy, Depends(get_policy)]

__all__ = ["AdminPrincipal", "Rules", "Settings", "Uow"]
