"""The catalog's FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from chassis.deps import AdminPrincipal, Ctx, Uow
from fastapi import Depends

from catalog.settings import CatalogSettings


async def get_settings(ctx: Ctx) -> CatalogSettings:
    settings = ctx.settings
    assert isinstance(settings, CatalogSettings)
    return settings


Settings = Annotated[CatalogSettings, Depends(get_settings)]

__all__ = ["AdminPrincipal", "Settings", "Uow"]
