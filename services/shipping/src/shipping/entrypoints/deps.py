"""The shipping service's FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from chassis.deps import CurrentPrincipal, Uow

__all__ = ["CurrentPrincipal", "Uow"]
