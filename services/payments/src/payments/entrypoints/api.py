"""Payments HTTP API under /api/payments: admin-only reads.

Payments are made, captured, voided and refunded by commands (from the order saga), never over
HTTP. Payments does not know customers, so there is no customer view here: the customer sees
the order's status through orders.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from payments.entrypoints.deps import AdminPrincipal, Uow
from payments.entrypoints.schemas import (
    IdRef,
    LedgerOut,
    PaymentListOut,
    PaymentOut,
    ledger_json,
    payment_json,
)
from payments.service_layer import handlers

router = APIRouter(prefix="/api/payments", tags=["payments"])


@router.get("/payments", response_model=PaymentListOut, summary="Payments of an order (admin)")
async def list_payments(order_id: Annotated[IdRef, Query()], uow: Uow,
                        _: AdminPrincipal) -> dict[str, Any]:
    found = await handlers.payments_for_order(uow, order_id)
    return {"items": [payment_json(p) for p in found]}


@router.get("/payments/{payment_id}", response_model=PaymentOut, summary="One payment (admin)")
async def read_payment(payment_id: Annotated[IdRef, Path()], uow: Uow,
                       _: AdminPrincipal) -> dict[str, Any]:
    return payment_json(await handlers.get_payment(uow, payment_id))


@router.get("/ledger", response_model=LedgerOut,
            summary="Ledger entries and totals of an order (admin)")
async def read_ledger(order_id: Annotated[IdRef, Query()], uow: Uow,
                      _: AdminPrincipal) -> dict[str, Any]:
    entries, totals = await handlers.ledger_for_order(uow, order_id)
    return ledger_json(order_id, entries, totals)
