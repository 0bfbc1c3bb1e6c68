"""The order_history service's FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from chassis.deps import CurrentPrincipal, Uow, get_ctx
from fastapi import Depends, Request

from order_history.settings import OrderHistorySettings


def get_settings(request: Request) -> OrderHistorySettings:
    settings = get_ctx(request).settings
    assert isinstance(settings, OrderHistorySettings)
    return settings


Settings = Annotated[OrderHistorySettings, Depends(get_settings)]

__all__ = ["CurrentPrincipal", "Settings", "Uow"]
