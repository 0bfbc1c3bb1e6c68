"""The notifications service's FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from chassis.deps import AdminPrincipal, Ctx, Uow

__all__ = ["AdminPrincipal", "Ctx", "Uow"]
