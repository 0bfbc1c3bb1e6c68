"""Payments HTTP API under /api/payments: a customer's payment methods, and admin reads.

A customer (or a storefront acting with their token) exchanges a card number for a payment
method once; orders name it by id. The number goes to the provider's vault and nowhere else.
Payments are made, captured, voided and refunded by commands (from the order saga), never over
HTTP; the customer sees the order's status through orders.
"""

from __future__ import annotations

from typing import Annotated, Any

from chassis.auth import require_role
from chassis.errors import BadRequest
from chassis.security_headers import PERSONAL_DATA
from fastapi import APIRouter, Header, Path, Query

from payments.entrypoints.deps import AdminPrincipal, CurrentPrincipal, ProviderDep, Uow
from payments.entrypoints.schemas import (
    IdRef,
    LedgerOut,
    PaymentListOut,
    PaymentMethodIn,
    PaymentMethodListOut,
    PaymentMethodOut,
    PaymentOut,
    ledger_json,
    payment_json,
    payment_method_json,
)
from payments.service_layer import handlers

# A customer's cards and an order's payments: kept by no cache (Cache-Control: no-store).
router = APIRouter(prefix="/api/payments", tags=["payments"], dependencies=[PERSONAL_DATA])

MAX_KEY_LENGTH = 200


@router.post("/payment-methods", status_code=201, response_model=PaymentMethodOut,
             responses={403: {"description": "the token lacks the customer role"},
                        409: {"description": "this Idempotency-Key was used for another card"}},
             summary="Exchange a card for a payment method (the caller's own)")
async def create_payment_method(
    body: PaymentMethodIn, uow: Uow, principal: CurrentPrincipal, provider: ProviderDep,
    idempotency_key: Annotated[str | None, Header(
        description="optional, 1-200 characters: a retry with the same key and card gets "
                    "the same payment method",
        json_schema_extra={"minLength": 1, "maxLength": MAX_KEY_LENGTH})] = None,
) -> dict[str, Any]:
    require_role(principal, "customer")
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_KEY_LENGTH:
        raise BadRequest(f"the Idempotency-Key header must be 1-{MAX_KEY_LENGTH} characters")
    method = await handlers.create_payment_method(
        uow, provider, principal, card_number=body.card_number,
        idempotency_key=idempotency_key)
    return payment_method_json(method)


@router.get("/payment-methods", response_model=PaymentMethodListOut,
            summary="The caller's payment methods, newest first")
async def list_payment_methods(uow: Uow, principal: CurrentPrincipal) -> dict[str, Any]:
    found = await handlers.payment_methods_of(uow, principal)
    return {"items": [payment_method_json(m) for m in found]}


@router.get("/payment-methods/{method_id}", response_model=PaymentMethodOut,
            summary="One payment method (its owner or an admin; 404 for anyone else)")
async def read_payment_method(method_id: Annotated[IdRef, Path()], uow: Uow,
                              principal: CurrentPrincipal) -> dict[str, Any]:
    return payment_method_json(await handlers.get_payment_method(uow, principal, method_id))


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
