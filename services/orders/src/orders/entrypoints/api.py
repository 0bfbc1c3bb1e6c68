"""Orders HTTP API under /api/orders.

A customer places orders and reads their own; an admin reads every order. Placing is
idempotent per (customer, Idempotency-Key): a retry gets the first answer, a different body
under the same key a 409.
"""

from __future__ import annotations

from typing import Annotated, Any

from chassis.auth import require_role
from chassis.deps import IdempotencyKey
from chassis.security_headers import PERSONAL_DATA
from fastapi import APIRouter, Header, Path, Query

from orders.domain.model import STATUSES
from orders.entrypoints.deps import (
    AdmissionDep,
    CardKey,
    CurrentPrincipal,
    Engine,
    ReplicaLookupsDep,
    Uow,
    UpstreamsDep,
)
from orders.entrypoints.schemas import IdRef, OrderIn, OrderOut, PlacedOut, order_json
from orders.service_layer import handlers

# Every answer here is one customer's data: never cached.
router = APIRouter(prefix="/api/orders", tags=["orders"], dependencies=[PERSONAL_DATA])

MAX_PAGE = 100
StatusFilter = Annotated[str, Query(pattern="^(" + "|".join(STATUSES) + ")$")]


@router.post("", status_code=202, response_model=PlacedOut,
             responses={403: {"description": "the token lacks the customer role"},
                        409: {"description": "this Idempotency-Key was used for another "
                                             "order"}},
             summary="Place an order (idempotent per Idempotency-Key); the saga runs after")
async def place_order(
    body: OrderIn, uow: Uow, principal: CurrentPrincipal, upstreams: UpstreamsDep,
    engine: Engine, admission: AdmissionDep, lookups: ReplicaLookupsDep, card_key: CardKey,
    idempotency_key: IdempotencyKey,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> dict[str, Any]:
    require_role(principal, "customer")
    placed = await handlers.place_order(
        uow, upstreams, engine, principal, body.command(),
        idempotency_key=idempotency_key, authorization=authorization, admission=admission,
        card_key=card_key, lookups=lookups)
    # A repeat gets the first answer: the order as it was accepted.
    return {"id": placed.order.id, "status": "PENDING"}


@router.get("", response_model=list[OrderOut],
            summary="Orders, newest first: the caller's own, or all for an admin")
async def list_orders(uow: Uow, principal: CurrentPrincipal,
                      status: StatusFilter | None = None,
                      limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
                      ) -> list[dict[str, Any]]:
    found = await handlers.list_orders(uow, principal, status=status, limit=limit)
    return [order_json(o) for o in found]


@router.get("/{order_id}", response_model=OrderOut,
            summary="One order (its customer or an admin; 404 for anyone else)")
async def read_order(order_id: Annotated[IdRef, Path()], uow: Uow,
                     principal: CurrentPrincipal) -> dict[str, Any]:
    return order_json(await handlers.get_order(uow, principal, order_id))


@router.get("/{order_id}/saga",
            summary="The order saga's state and every step it took (customer or admin)")
async def read_saga(order_id: Annotated[IdRef, Path()], uow: Uow,
                    principal: CurrentPrincipal) -> dict[str, Any]:
    return await handlers.saga_history(uow, principal, order_id)


@router.post("/{order_id}/cancel", status_code=202, response_model=OrderOut,
             summary="Cancel an order before dispatch: PENDING (when its saga ends) or "
                     "APPROVED (once shipping has cancelled the shipment); 409 otherwise")
async def cancel_order(order_id: Annotated[IdRef, Path()], uow: Uow,
                       principal: CurrentPrincipal, engine: Engine) -> dict[str, Any]:
    return order_json(await handlers.request_cancel(uow, principal, order_id, engine))
