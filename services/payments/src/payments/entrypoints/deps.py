"""The payments' FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from chassis.deps import AdminPrincipal, Uow

__all__ = ["AdminPrincipal", "Uow"]
