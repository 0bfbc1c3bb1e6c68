"""Shipping HTTP API under /api/shipping.

Shipments are created and cancelled by commands (from the order saga), never over HTTP.
A customer reads only their own shipments, an admin every one; tracking is public and shows
the status only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from shipping.entrypoints.deps import CurrentPrincipal, Uow
from shipping.entrypoints.schemas import (
    IdRef,
    ShipmentOut,
    TrackingOut,
    TrackingRef,
    shipment_json,
    tracking_json,
)
from shipping.service_layer import handlers

router = APIRouter(prefix="/api/shipping", tags=["shipping"])

MAX_PAGE = 100


@router.get("/shipments", response_model=list[ShipmentOut],
            summary="Shipments, newest first: the caller's own, or all for an admin")
async def list_shipments(
    uow: Uow, principal: CurrentPrincipal,
    order_id: Annotated[IdRef | None, Query(description="only this order's")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> list[dict[str, Any]]:
    found = await handlers.list_shipments(uow, principal, order_id=order_id, limit=limit)
    return [shipment_json(s) for s in found]


@router.get("/shipments/{shipment_id}", response_model=ShipmentOut,
            summary="One shipment (its customer or an admin; 404 for anyone else)")
async def read_shipment(shipment_id: Annotated[IdRef, Path()], uow: Uow,
                        principal: CurrentPrincipal) -> dict[str, Any]:
    return shipment_json(await handlers.get_shipment(uow, principal, shipment_id))


@router.get("/track/{tracking_number}", response_model=TrackingOut,
            summary="Where a parcel is (public): status only")
async def track(tracking_number: Annotated[TrackingRef, Path()], uow: Uow) -> dict[str, Any]:
    return tracking_json(await handlers.track(uow, tracking_number.upper()))
