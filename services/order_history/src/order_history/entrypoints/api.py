"""order_history HTTP API under /api/history: read-only, built from events.

A customer reads only their own orders; an admin every one (optionally one customer's).
Rows whose customer no event has named yet are shown to admins only.
"""

from __future__ import annotations

from typing import Annotated, Any

from chassis.security_headers import PERSONAL_DATA
from fastapi import APIRouter, Path, Query

from order_history.entrypoints.deps import CurrentPrincipal, Settings, Uow
from order_history.entrypoints.schemas import (
    IdRef,
    OrderViewOut,
    OrderViewPageOut,
    order_json,
)
from order_history.service_layer import handlers
from order_history.settings import API_PREFIX

# Every answer here is one customer's data: never cached.
router = APIRouter(prefix=API_PREFIX, tags=["order_history"], dependencies=[PERSONAL_DATA])


@router.get("/orders", response_model=OrderViewPageOut,
            summary="Orders, newest first: the caller's own, or all for an admin")
async def list_orders(
    uow: Uow, principal: CurrentPrincipal, settings: Settings,
    customer_id: Annotated[IdRef | None, Query(
        description="admins only: one customer's orders (ignored for customers)")] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    page_size = min(page_size, settings.max_page_size)
    found = await handlers.list_orders(uow, principal, customer_id=customer_id, page=page,
                                       page_size=page_size)
    return {"items": [order_json(s) for s in found.items], "total": found.total,
            "page": page, "page_size": page_size}


@router.get("/orders/{order_id}", response_model=OrderViewOut,
            summary="One order (its customer or an admin; 404 for anyone else)")
async def read_order(order_id: Annotated[IdRef, Path()], uow: Uow,
                     principal: CurrentPrincipal) -> dict[str, Any]:
    return order_json(await handlers.get_order(uow, principal, order_id))
