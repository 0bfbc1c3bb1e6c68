"""Inventory HTTP API under /api/inventory. Stock reads are public; the rest needs admin.

Reservations are made and ended by commands (from the order saga), never over HTTP; the
admin can only look at them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from inventory.entrypoints.deps import AdminPrincipal, Rules, StockMover, Uow
from inventory.entrypoints.schemas import (
    AdjustmentIn,
    AdjustmentOut,
    NewSku,
    OnHandIn,
    ReservationOut,
    SkuRef,
    StockListOut,
    StockOut,
    reservation_json,
    stock_json,
)
from inventory.service_layer import handlers

router = APIRouter(prefix="/api/inventory", tags=["inventory"])

MAX_SKUS_PER_QUERY = 100


@router.get("/stock", response_model=StockListOut,
            summary="Stock of several SKUs (public); unknown SKUs are left out")
async def list_stock(
    uow: Uow,
    sku: Annotated[list[SkuRef], Query(min_length=1, max_length=MAX_SKUS_PER_QUERY,
                                       description="repeat: ?sku=A&sku=B")],
) -> dict[str, Any]:
    found = await handlers.list_stock(uow, sku)
    return {"items": [stock_json(s) for s in found]}


@router.get("/stock/{sku}", response_model=StockOut, summary="Stock of one SKU (public)")
async def read_stock(sku: Annotated[SkuRef, Path()], uow: Uow) -> dict[str, Any]:
    return stock_json(await handlers.get_stock(uow, sku))


@router.put("/stock/{sku}", response_model=StockOut,
            summary="Set the units on hand (admin); 409 below what is reserved")
async def put_stock(sku: Annotated[NewSku, Path()], body: OnHandIn, uow: Uow, rules: Rules,
                    _: AdminPrincipal) -> dict[str, Any]:
    return stock_json(await handlers.set_on_hand(uow, sku, body.on_hand, rules))


@router.post("/stock/{sku}/adjustments", response_model=AdjustmentOut,
             summary="Move units in or out once per id (the migration's stock split only); "
                     "409 when fewer units are free")
async def adjust_stock(sku: Annotated[NewSku, Path()], body: AdjustmentIn, uow: Uow,
                       rules: Rules, _: StockMover) -> dict[str, Any]:
    done = await handlers.adjust_stock(uow, sku, body.id, body.delta, rules)
    return {**stock_json(done.stock), "adjustment_id": body.id, "delta": done.delta,
            "repeated": done.repeated}


@router.get("/reservations/{reservation_id}", response_model=ReservationOut,
            summary="One reservation (admin)")
async def read_reservation(
    reservation_id: Annotated[str, Path(min_length=1, max_length=200)], uow: Uow,
    _: AdminPrincipal,
) -> dict[str, Any]:
    return reservation_json(await handlers.get_reservation(uow, reservation_id))
