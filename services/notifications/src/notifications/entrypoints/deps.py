"""The notifications service's FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated, TypeAlias

from chassis.app import ServiceContext
from chassis.deps import AdminPrincipal, Uow, get_ctx
from fastapi import Depends

from notifications.settings import NotificationsSettings

# The service's context as create_app typed it: its settings, no wiring of its own.
NotificationsContext: TypeAlias = ServiceContext[NotificationsSettings, None]
Context = Annotated[NotificationsContext, Depends(get_ctx)]

__all__ = ["AdminPrincipal", "Context", "Uow"]
