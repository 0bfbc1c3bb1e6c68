"""The catalog's FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated, TypeAlias

from chassis.app import ServiceContext
from chassis.deps import AdminPrincipal, Uow, get_ctx
from fastapi import Depends

from catalog.settings import CatalogSettings

# The service's context as create_app typed it: its settings, no wiring of its own.
CatalogContext: TypeAlias = ServiceContext[CatalogSettings, None]
Context = Annotated[CatalogContext, Depends(get_ctx)]


async def get_settings(ctx: Context) -> CatalogSettings:
    return ctx.settings


Settings = Annotated[CatalogSettings, Depends(get_settings)]

__all__ = ["AdminPrincipal", "Settings", "Uow"]
