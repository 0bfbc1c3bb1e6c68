"""identity's HTTP API under /api/identity, and the JWKS at /.well-known/jwks.json."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Annotated, Any

from chassis.errors import Forbidden
from chassis.security_headers import PERSONAL_DATA
from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import JSONResponse

from identity.entrypoints.deps import (
    AdminPrincipal,
    CurrentPrincipal,
    CurrentUserId,
    IdentityUow,
    ServiceCaller,
    Services,
)
from identity.entrypoints.schemas import (
    AddressIn,
    AddressListOut,
    AddressOut,
    JwksOut,
    KeyRotatedOut,
    MeOut,
    RegisterIn,
    TokenOut,
    UserOut,
    address_json,
    me_json,
)
from identity.service_layer.errors import InvalidRequest, UnsupportedGrantType
from identity.service_layer.handlers import NewAddress, TokenPair, rotate_signing_key

PREFIX = "/api/identity"
router = APIRouter(prefix=PREFIX, tags=["identity"])
jwks_router = APIRouter(tags=["keys"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
# Answers holding one person's data (profile, addresses) are never cached.
_PERSONAL = [PERSONAL_DATA]
# Generous bounds, far above anything legitimate, so one form cannot make the service
# hash megabytes or look up absurd keys.
_MAX_USERNAME, _MAX_PASSWORD, _MAX_REFRESH_TOKEN = 320, 1024, 256


@router.post("/register", status_code=201, response_model=UserOut, dependencies=_PERSONAL,
             responses={409: {"description": "email taken", **_PROBLEM},
                        422: {"description": "invalid email, password or name", **_PROBLEM}},
             summary="Create a customer account")
async def register(body: RegisterIn, uow: IdentityUow, services: Services,
                   response: Response) -> dict[str, Any]:
    user = await services.accounts.register(uow, email=body.email, password=body.password,
                                            name=body.name)
    response.headers["Location"] = f"{PREFIX}/me"
    return {"id": str(user.id), "email": user.email, "name": user.name}


def _required(value: str | None, field: str, max_chars: int) -> str:
    if not value:
        raise InvalidRequest(f"'{field}' is required for this grant_type")
    if len(value) > max_chars:
        raise InvalidRequest(f"'{field}' is longer than {max_chars} characters")
    return value


# Set by the edge to the address it sees (and rate-limits by), replacing any a client sent.
# Only the edge and mercato's own processes reach identity, so the header is trusted; a
# direct caller without it is keyed by its own socket address.
# The services that read an account's address while acting for its owner (orders, for the
# shipping address of an order).
ADDRESS_READERS = frozenset({"orders"})
CLIENT_ADDRESS_HEADER = "x-mercato-client-address"


def client_address(request: Request) -> str:
    for candidate in (request.headers.get(CLIENT_ADDRESS_HEADER),
                      request.client.host if request.client else None):
        if candidate:
            try:
                return str(ipaddress.ip_address(candidate.strip()))
            except ValueError:
                continue
    return "unknown"


def _token_response(pair: TokenPair) -> JSONResponse:
    body = {"access_token": pair.access.token, "token_type": "bearer",
            "expires_in": pair.access.expires_in, "refresh_token": pair.refresh_token}
    # RFC 6749 §5.1: responses carrying tokens must not be cached anywhere.
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.post("/token", response_model=TokenOut,
             responses={400: {"description": "invalid_request, invalid_grant or "
                              "unsupported_grant_type (RFC 6749 §5.2)", **_PROBLEM},
                        429: {"description": "too many failed sign-ins for this account from "
                              "this client; see Retry-After", **_PROBLEM}},
             summary="OAuth 2 token endpoint: password and refresh_token grants")
async def token(
    request: Request, uow: IdentityUow, services: Services,
    grant_type: Annotated[str | None, Form(
        json_schema_extra={"enum": ["password", "refresh_token"]})] = None,
    username: Annotated[str | None, Form(description="the account's email")] = None,
    password: Annotated[str | None, Form()] = None,
    refresh_token: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    # Fields are checked here rather than by the form model so that a missing one is an
    # OAuth "invalid_request" (400), which token clients understand, not a generic 422.
    if not grant_type:
        raise InvalidRequest("'grant_type' is required (application/x-www-form-urlencoded)")
    if grant_type == "password":
        pair = await services.sessions.authenticate(
            uow, username=_required(username, "username", _MAX_USERNAME),
            password=_required(password, "password", _MAX_PASSWORD),
            client=client_address(request))
    elif grant_type == "refresh_token":
        pair = await services.sessions.refresh(
            uow, _required(refresh_token, "refresh_token", _MAX_REFRESH_TOKEN))
    else:
        raise UnsupportedGrantType(
            "grant_type must be 'password' or 'refresh_token'")
    return _token_response(pair)


@router.get("/me", response_model=MeOut, dependencies=_PERSONAL, summary="The signed-in account")
async def me(user_id: CurrentUserId, uow: IdentityUow, services: Services) -> dict[str, Any]:
    return me_json(await services.accounts.me(uow, user_id))


@router.post("/me/addresses", status_code=201, response_model=AddressOut, dependencies=_PERSONAL,
             responses={409: {"description": "address book full", **_PROBLEM}},
             summary="Add an address to the signed-in account")
async def add_address(body: AddressIn, user_id: CurrentUserId, uow: IdentityUow,
                      services: Services, response: Response) -> dict[str, Any]:
    address = await services.accounts.add_address(uow, user_id, NewAddress(
        name=body.name, line1=body.line1, line2=body.line2, city=body.city,
        postal_code=body.postal_code, country=body.country, phone=body.phone))
    response.headers["Location"] = f"{PREFIX}/me/addresses/{address.id}"
    return address_json(address)


@router.get("/me/addresses", response_model=AddressListOut, dependencies=_PERSONAL,
            summary="The signed-in account's addresses, oldest first")
async def list_addresses(user_id: CurrentUserId, uow: IdentityUow,
                         services: Services) -> dict[str, Any]:
    found = await services.accounts.list_addresses(uow, user_id)
    return {"items": [address_json(a) for a in found]}


@router.get("/me/addresses/{address_id}", response_model=AddressOut, dependencies=_PERSONAL,
            responses={404: {"description": "no such address of yours", **_PROBLEM}},
            summary="One of the signed-in account's addresses")
async def read_address(address_id: uuid.UUID, user_id: CurrentUserId, uow: IdentityUow,
                       services: Services) -> dict[str, Any]:
    return address_json(await services.accounts.get_address(uow, user_id, address_id))


@router.get("/users/{user_id}/addresses/{address_id}", response_model=AddressOut,
            dependencies=_PERSONAL,
            responses={403: {"description": "not a verified service acting for the owner, nor "
                                             "an admin", **_PROBLEM},
                       404: {"description": "no such address of that user", **_PROBLEM}},
            summary="An account's address, for a service acting for its owner, or an admin")
async def read_user_address(user_id: uuid.UUID, address_id: uuid.UUID,
                            principal: CurrentPrincipal, caller: ServiceCaller,
                            uow: IdentityUow, services: Services) -> dict[str, Any]:
    # Two checks, both needed: the service says who it is (its signed identity), the
    # customer's token says for whom it acts. An admin may read any account's.
    if not principal.is_admin:
        if caller not in ADDRESS_READERS:
            raise Forbidden("this route is for services acting for a customer, with a verified "
                            "service identity; a customer reads their own addresses at "
                            "/api/identity/me/addresses/{id}")
        if not principal.can_act_for(str(user_id)):
            raise Forbidden("the customer's token is not for this account")
    return address_json(await services.accounts.get_address(uow, user_id, address_id))


@router.post("/admin/keys/rotate", response_model=KeyRotatedOut,
             summary="Start signing with a new key (admin); the old one stays published "
                     "until the tokens it signed have expired")
async def rotate_key(_: AdminPrincipal, services: Services) -> dict[str, str]:
    return {"kid": await rotate_signing_key(services.keys)}


async def _jwks(services: Services) -> JSONResponse:
    # Short public caching: verifiers refetch on an unknown kid anyway.
    return JSONResponse(await services.keys.jwks(),
                        headers={"Cache-Control": "public, max-age=60"})


jwks_router.add_api_route("/.well-known/jwks.json", _jwks, methods=["GET"],
                          response_model=JwksOut, operation_id="jwks",
                          summary="Public keys that sign access tokens")
router.add_api_route("/.well-known/jwks.json", _jwks, methods=["GET"], response_model=JwksOut,
                     operation_id="identity_jwks",
                     summary="Public keys that sign access tokens (same as the root's)")
