"""FastAPI dependencies every service shares, as ``Annotated`` aliases.

Every dependency is ``async def``, in the services too: FastAPI runs a plain ``def`` one in
its thread pool, a thread hand-off per dependency per request (four per order placed) for
work that never blocks.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request

from chassis.app import ServiceContext
from chassis.auth import Principal, bearer_token, require_role
from chassis.db import UnitOfWork
from chassis.errors import BadRequest, Forbidden
from chassis.http_client import H_SERVICE_IDENTITY
from chassis.openapi import reads_header, responds
from chassis.service_identity import InvalidCaller
from chassis.settings import ServiceSettings


async def get_ctx(request: Request) -> ServiceContext[Any, Any]:
    """The app's context. Its settings and wiring types are the ones the service gave
    ``create_service_app``; a service names them in its own alias (ADR 0025):
    ``Context = Annotated[ServiceContext[OrdersSettings, OrdersWiring], Depends(get_ctx)]``."""
    ctx: ServiceContext[Any, Any] = request.app.state.ctx
    return ctx


# The chassis's part of any service's context: its settings as ServiceSettings, no wiring.
Ctx = Annotated[ServiceContext[ServiceSettings, object], Depends(get_ctx)]


async def get_uow(ctx: Ctx) -> UnitOfWork:
    return ctx.require_db().unit_of_work()


Uow = Annotated[UnitOfWork, Depends(get_uow)]


@responds(401)
async def current_principal(
    ctx: Ctx, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> Principal:
    token = bearer_token(authorization)
    assert ctx.verifier is not None
    return await ctx.verifier.verify(token)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


@responds(403, "The token lacks the admin role")
async def admin_principal(principal: CurrentPrincipal) -> Principal:
    return require_role(principal, "admin")


AdminPrincipal = Annotated[Principal, Depends(admin_principal)]


MAX_IDEMPOTENCY_KEY = 200


@reads_header("Idempotency-Key", {"type": "string", "minLength": 1,
                                  "maxLength": MAX_IDEMPOTENCY_KEY},
              "1-200 characters; a retry with the same key and body gets the first answer")
@responds(400, "The Idempotency-Key header is missing or longer than 200 characters")
async def idempotency_key(request: Request) -> str:
    """A write that must happen once per key: a missing key is a 400 (the Idempotency-Key
    draft's answer), which is why this reads the header itself instead of FastAPI (422)."""
    key = request.headers.get("idempotency-key")
    if key is None or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise BadRequest(f"the Idempotency-Key header (1-{MAX_IDEMPOTENCY_KEY} characters) "
                         "is required")
    return key


IdempotencyKey = Annotated[str, Depends(idempotency_key)]


@responds(403, "The call does not carry a verified service identity")
async def service_caller(ctx: Ctx, request: Request) -> str | None:
    """The calling service, verified (``chassis.service_identity``), or None when the call
    carries no service identity at all (a person through the edge). A present but invalid
    identity is refused: a forged or stolen-and-expired token must not pass as no token."""
    token = request.headers.get(H_SERVICE_IDENTITY)
    if not token:
        return None
    if ctx.caller_verifier is None:
        raise Forbidden("this service trusts no caller keys, so it cannot verify the caller "
                        f"in {H_SERVICE_IDENTITY}")
    try:
        return ctx.caller_verifier.verify(token)
    except InvalidCaller as exc:
        raise Forbidden(f"the {H_SERVICE_IDENTITY} identity is not valid: {exc}") from exc


ServiceCaller = Annotated[str | None, Depends(service_caller)]
