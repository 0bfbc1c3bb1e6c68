"""The inventory's FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated, TypeAlias

from chassis.app import ServiceContext
from chassis.deps import AdminPrincipal, ServiceCaller, Uow, get_ctx
from chassis.errors import Forbidden
from chassis.openapi import responds
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

# Callers that may move units in and out of a SKU by adjustment: the strangler-fig
# migration's stock split (ADR 0034), with its own signed service identity. Nobody else, an
# admin included: a person sets a count with PUT, a split moves units it owns elsewhere.
ADJUST_CALLERS = frozenset({"sync"})


@responds(403, "Not a verified stock-split caller")
async def stock_mover(caller: ServiceCaller) -> str:
    if caller in ADJUST_CALLERS:
        return caller
    raise Forbidden("stock adjustments are made by the migration's stock split only")


StockMover = Annotated[str, Depends(stock_mover)]

__all__ = ["AdminPrincipal", "Rules", "Settings", "StockMover", "Uow"]
