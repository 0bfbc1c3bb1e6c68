"""identity's FastAPI dependencies, as Annotated aliases, and the wiring they read."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, TypeAlias

from chassis.app import ServiceContext
from chassis.deps import AdminPrincipal, CurrentPrincipal, ServiceCaller, Uow, get_ctx
from chassis.errors import Unauthorized
from fastapi import Depends

from identity.adapters.keys import KeyRing
from identity.adapters.repository import SqlIdentityUnitOfWork
from identity.service_layer.handlers import IdentityServices
from identity.service_layer.ports import IdentityUnitOfWork
from identity.settings import IdentitySettings

if TYPE_CHECKING:  # pages' dependencies read the wiring: pages imports this module
    from identity.entrypoints.pages import CsrfTokens


@dataclass(frozen=True, slots=True)
class IdentityWiring:
    """What ``bootstrap`` builds for the handlers (ADR 0025)."""

    services: IdentityServices
    keys: KeyRing  # also what identity checks its own tokens against (app.OwnKeys)
    csrf: CsrfTokens  # the sign-in form's tokens


IdentityContext: TypeAlias = ServiceContext[IdentitySettings, IdentityWiring]
Context = Annotated[IdentityContext, Depends(get_ctx)]


async def get_services(ctx: Context) -> IdentityServices:
    return ctx.wiring.services


Services = Annotated[IdentityServices, Depends(get_services)]


async def get_identity_uow(uow: Uow) -> IdentityUnitOfWork:
    return SqlIdentityUnitOfWork(uow)


IdentityUow = Annotated[IdentityUnitOfWork, Depends(get_identity_uow)]


async def current_user_id(principal: CurrentPrincipal) -> uuid.UUID:
    try:
        return uuid.UUID(principal.subject)
    except ValueError:
        # A valid token whose subject is not an account (a service identity, say).
        raise Unauthorized("this token does not name a user account") from None


CurrentUserId = Annotated[uuid.UUID, Depends(current_user_id)]

__all__ = ["AdminPrincipal", "Context", "CurrentPrincipal", "CurrentUserId", "IdentityUow",
           "ServiceCaller", "Services"]
