"""The payments' FastAPI dependencies, as Annotated aliases, and the wiring they read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, TypeAlias

from chassis.app import ServiceContext
from chassis.deps import AdminPrincipal, CurrentPrincipal, Uow, get_ctx
from fastapi import Depends

from payments.service_layer.handlers import Provider
from payments.settings import PaymentsSettings


@dataclass(frozen=True, slots=True)
class PaymentsWiring:
    """What ``bootstrap`` builds for the handlers (ADR 0025)."""

    provider: Provider  # the card vault, for POST /payment-methods


PaymentsContext: TypeAlias = ServiceContext[PaymentsSettings, PaymentsWiring]
Context = Annotated[PaymentsContext, Depends(get_ctx)]


async def get_provider(ctx: Context) -> Provider:
    return ctx.wiring.provider


ProviderDep = Annotated[Provider, Depends(get_provider)]

__all__ = ["AdminPrincipal", "CurrentPrincipal", "ProviderDep", "Uow"]
