"""identity's FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

import uuid
from typing import Annotated

from chassis.deps import AdminPrincipal, Ctx, CurrentPrincipal, ServiceCaller, Uow
from chassis.errors import Unauthorized
from fastapi import Depends

from identity.adapters.repository import SqlIdentityUnitOfWork
from identity.service_layer.handlers import IdentityServices
from identity.service_layer.ports import IdentityUnitOfWork

STATE_KEY = "identity"


async def get_services(ctx: Ctx) -> IdentityServices:
    services: IdentityServices = ctx.state[STATE_KEY]
    return services


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

__all__ = ["AdminPrincipal", "CurrentPrincipal", "CurrentUserId", "IdentityUow", "ServiceCaller",
           "Services"]
