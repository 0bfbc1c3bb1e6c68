"""Cart HTTP API under /api/cart.

Every route acts on the caller's own cart (the token's subject): there is no cart id to
guess, and no route reads another customer's cart, admins included.
"""

from __future__ import annotations

from typing import Annotated, Any

from chassis.deps import IdempotencyKey
from chassis.security_headers import PERSONAL_DATA
from fastapi import APIRouter, Header, Path
from starlette.responses import Response

from cart.entrypoints.deps import Customer, Uow, UpstreamsDep
from cart.entrypoints.schemas import CartOut, CheckoutIn, CheckoutOut, IdRef, ItemIn, cart_json
from cart.service_layer import handlers

# Every answer here is one customer's data: never cached.
router = APIRouter(prefix="/api/cart", tags=["cart"], dependencies=[PERSONAL_DATA])

ProductId = Annotated[IdRef, Path(description="the catalog product id")]


@router.get("", response_model=CartOut, summary="The caller's cart (empty if none)")
async def read_cart(uow: Uow, principal: Customer) -> dict[str, Any]:
    return cart_json(await handlers.get_cart(uow, principal))


@router.put("/items/{product_id}", response_model=CartOut,
            summary="Add a product or set its quantity, at the catalog's current price")
async def put_item(product_id: ProductId, body: ItemIn, uow: Uow, principal: Customer,
                   upstreams: UpstreamsDep) -> dict[str, Any]:
    return cart_json(await handlers.set_item(uow, upstreams, principal, product_id,
                                             body.quantity))


@router.delete("/items/{product_id}", status_code=204,
               summary="Remove a product (204 whether or not it was in the cart)")
async def delete_item(product_id: ProductId, uow: Uow, principal: Customer) -> Response:
    await handlers.remove_item(uow, principal, product_id)
    return Response(status_code=204)


@router.post("/checkout", status_code=202, response_model=CheckoutOut,
             summary="Turn the cart into an order (idempotent per Idempotency-Key)")
async def checkout(
    body: CheckoutIn, uow: Uow, principal: Customer, upstreams: UpstreamsDep,
    idempotency_key: IdempotencyKey,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> dict[str, Any]:
    done = await handlers.checkout(uow, upstreams, principal, body.command(),
                                   idempotency_key=idempotency_key, authorization=authorization)
    return {"order_id": done.order_id, "status": done.status}
