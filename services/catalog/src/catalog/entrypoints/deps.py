"""The catalog's FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated, TypeAlias

from chassis.app import ServiceContext
from chassis.auth import require_role
from chassis.deps import AdminPrincipal, ServiceCaller, Uow, current_principal, get_ctx
from chassis.openapi import responds
from fastapi import Depends, Header

from catalog.settings import CatalogSettings

# The service's context as create_app typed it: its settings, no wiring of its own.
CatalogContext: TypeAlias = ServiceContext[CatalogSettings, None]
Context = Annotated[CatalogContext, Depends(get_ctx)]


async def get_settings(ctx: Context) -> CatalogSettings:
    return ctx.settings


Settings = Annotated[CatalogSettings, Depends(get_settings)]

# Callers that may state products whole without a person's token: the strangler-fig
# migration's sync process (ADR 0029), with its own signed service identity.
RECORD_CALLERS = frozenset({"sync"})


@responds(401)
@responds(403, "Neither an admin nor a verified record caller")
async def record_writer(ctx: Context, caller: ServiceCaller,
                        authorization: Annotated[str | None, Header(include_in_schema=False)]
                        = None) -> str:
    if caller in RECORD_CALLERS:
        return caller
    principal = await current_principal(ctx, authorization)  # type: ignore[arg-type]
    return require_role(principal, "admin").subject


RecordWriter = Annotated[str, Depends(record_writer)]

__all__ = ["AdminPrincipal", "RecordWriter", "Settings", "Uow"]
