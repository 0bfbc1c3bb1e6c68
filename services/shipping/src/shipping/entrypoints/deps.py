"""The shipping service's FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import TypeAlias

from chassis.app import ServiceContext
from chassis.deps import CurrentPrincipal, Uow

from shipping.settings import ShippingSettings

# The service's context as create_app typed it: its settings, no wiring of its own.
ShippingContext: TypeAlias = ServiceContext[ShippingSettings, None]

__all__ = ["CurrentPrincipal", "Uow"]
