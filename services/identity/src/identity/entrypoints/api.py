"""identity's HTTP API under /api/identity, and the JWKS at /.well-known/jwks.json."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import secrets
import uuid
from typing import Annotated, Any
from urllib.parse import unquote_plus

from chassis.errors import Forbidden
from chassis.openapi import responds
from chassis.security_headers import PERSONAL_DATA
from fastapi import APIRouter, Depends, Form, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from identity.domain.oauth import OAuthClient
from identity.entrypoints.deps import (
    AdminPrincipal,
    CurrentPrincipal,
    CurrentUserId,
    IdentityUow,
    ServiceCaller,
    Services,
)
from identity.entrypoints.schemas import (
    AccountIdsOut,
    AccountRecordIn,
    AccountRecordOut,
    AddressIn,
    AddressListOut,
    AddressOut,
    ClientCreatedOut,
    ClientIn,
    ClientListOut,
    ExchangedTokenOut,
    JwksOut,
    KeyRotatedOut,
    MeOut,
    ProfileIn,
    RegisterIn,
    TokenOut,
    UserOut,
    account_record_json,
    address_json,
    me_json,
)
from identity.service_layer.errors import InvalidClient, InvalidRequest, UnsupportedGrantType
from identity.service_layer.handlers import (
    AccountRecord,
    NewAddress,
    TokenPair,
    account_etag,
    rotate_signing_key,
)

PREFIX = "/api/identity"
router = APIRouter(prefix=PREFIX, tags=["identity"])
jwks_router = APIRouter(tags=["keys"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
# Answers holding one person's data (profile, addresses) are never cached.
_PERSONAL = [PERSONAL_DATA]
# Generous bounds, far above anything legitimate, so one form cannot make the service
# hash megabytes or look up absurd keys.
_MAX_USERNAME, _MAX_PASSWORD, _MAX_REFRESH_TOKEN = 320, 1024, 256
_MAX_CODE, _MAX_REDIRECT_URI, _MAX_VERIFIER, _MAX_CLIENT_ID, _MAX_SECRET = \
    100, 2000, 128, 64, 256


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


# The services that may exchange a person's session on the legacy shop, which the monolith
# checked, for an access token for that account (ADR 0032): the migration's ACL only.
EXCHANGE_CALLERS = frozenset({"acl"})
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
# The subject is named, not proven, in the request: the caller vouches for it.
ACCOUNT_ID_TOKEN_TYPE = "urn:mercato:params:oauth:token-type:account-id"  # noqa: S105
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105

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


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """HTTP Basic client credentials (RFC 6749 §2.3.1: each part form-urlencoded first)."""
    if authorization is None:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClient("client authentication uses HTTP Basic or client_secret in the "
                            "form")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("the Basic credentials are not valid base64") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise InvalidClient("the Basic credentials are not client_id:client_secret")
    return unquote_plus(client_id), unquote_plus(secret)


def _client_credentials(authorization: str | None, client_id: str | None,
                        client_secret: str | None) -> tuple[str, str | None]:
    basic = _basic_credentials(authorization)
    if basic is not None:
        if client_secret is not None:
            raise InvalidRequest("use one client authentication method: HTTP Basic or "
                                 "client_secret in the form, not both")
        if client_id is not None and client_id != basic[0]:
            raise InvalidRequest("client_id differs from the one in the Basic credentials")
        return basic
    if not client_id:
        raise InvalidClient("the client is not identified: HTTP Basic, or client_id "
                            "(and client_secret for a confidential client) in the form")
    if len(client_id) > _MAX_CLIENT_ID or (client_secret is not None
                                            and len(client_secret) > _MAX_SECRET):
        raise InvalidClient("unknown client or wrong client secret")
    return client_id, client_secret


@router.post("/token", response_model=TokenOut,
             responses={400: {"description": "invalid_request, invalid_grant or "
                              "unsupported_grant_type (RFC 6749 §5.2)", **_PROBLEM},
                        401: {"description": "invalid_client: unknown client or wrong "
                              "secret (authorization_code grant)", **_PROBLEM},
                        429: {"description": "too many failed sign-ins for this account from "
                              "this client; see Retry-After", **_PROBLEM}},
             # Its 401 is a client's HTTP Basic credentials, not a missing bearer token.
             openapi_extra={"security": []},
             summary="OAuth 2 token endpoint: password, refresh_token and authorization_code "
                     "grants")
async def token(
    request: Request, uow: IdentityUow, services: Services,
    grant_type: Annotated[str | None, Form(
        json_schema_extra={"enum": ["password", "refresh_token", "authorization_code"]})] = None,
    username: Annotated[str | None, Form(description="the account's email")] = None,
    password: Annotated[str | None, Form()] = None,
    refresh_token: Annotated[str | None, Form()] = None,
    code: Annotated[str | None, Form(description="authorization_code: the code")] = None,
    redirect_uri: Annotated[str | None, Form(
        description="authorization_code: the redirect_uri the code was asked with")] = None,
    code_verifier: Annotated[str | None, Form(
        description="authorization_code: the PKCE verifier (RFC 7636)")] = None,
    client_id: Annotated[str | None, Form(
        description="authorization_code: the client, unless HTTP Basic names it")] = None,
    client_secret: Annotated[str | None, Form(
        description="authorization_code: a confidential client's secret, unless sent by "
                    "HTTP Basic")] = None,
    authorization: Annotated[str | None, Header(
        include_in_schema=False, description="HTTP Basic client credentials")] = None,
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
    elif grant_type == "authorization_code":
        the_client, secret = _client_credentials(authorization, client_id, client_secret)
        pair = await services.authorizations.exchange(
            uow, client_id=the_client, client_secret=secret,
            code=_required(code, "code", _MAX_CODE),
            redirect_uri=_required(redirect_uri, "redirect_uri", _MAX_REDIRECT_URI),
            code_verifier=_required(code_verifier, "code_verifier", _MAX_VERIFIER))
    else:
        raise UnsupportedGrantType(
            "grant_type must be 'password', 'refresh_token' or 'authorization_code'")
    return _token_response(pair)


@router.post("/exchange", response_model=ExchangedTokenOut,
             responses={400: {"description": "invalid_request or unsupported_grant_type "
                              "(RFC 8693 §2.2.2)", **_PROBLEM},
                        403: {"description": "not a verified service allowed to exchange",
                              **_PROBLEM},
                        404: {"description": "no such account", **_PROBLEM}},
             openapi_extra={"security": []},
             summary="Token exchange (RFC 8693 shaped) for the migration's ACL: an access "
                     "token for an account whose legacy session the monolith vouched for")
async def exchange(
    uow: IdentityUow, services: Services, caller: ServiceCaller,
    grant_type: Annotated[str | None, Form(json_schema_extra={"enum": [TOKEN_EXCHANGE]})]
    = None,
    subject_token: Annotated[str | None, Form(description="the account's id")] = None,
    subject_token_type: Annotated[str | None, Form(
        json_schema_extra={"enum": [ACCOUNT_ID_TOKEN_TYPE]})] = None,
    requested_token_type: Annotated[str | None, Form(
        json_schema_extra={"enum": [ACCESS_TOKEN_TYPE]})] = None,
) -> JSONResponse:
    # The caller first: who may not exchange learns nothing about the accounts.
    if caller not in EXCHANGE_CALLERS:
        raise Forbidden("token exchange is for the migration's anti-corruption layer, with its "
                        "verified service identity (Mercato-Caller)")
    if grant_type != TOKEN_EXCHANGE:
        raise UnsupportedGrantType(f"grant_type must be {TOKEN_EXCHANGE}")
    if subject_token_type != ACCOUNT_ID_TOKEN_TYPE:
        raise InvalidRequest(f"subject_token_type must be {ACCOUNT_ID_TOKEN_TYPE}")
    if requested_token_type not in (None, ACCESS_TOKEN_TYPE):
        raise InvalidRequest(f"only {ACCESS_TOKEN_TYPE} is issued")
    try:
        account = uuid.UUID(_required(subject_token, "subject_token", 64))
    except ValueError:
        raise InvalidRequest("subject_token is an account id (a UUID)") from None
    access = await services.sessions.exchange(uow, account, actor=caller)
    return JSONResponse({"access_token": access.token, "issued_token_type": ACCESS_TOKEN_TYPE,
                         "token_type": "bearer", "expires_in": access.expires_in},
                        headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.get("/me", response_model=MeOut, dependencies=_PERSONAL, summary="The signed-in account")
async def me(user_id: CurrentUserId, uow: IdentityUow, services: Services) -> dict[str, Any]:
    return me_json(await services.accounts.me(uow, user_id))


@router.patch("/me", response_model=MeOut, dependencies=_PERSONAL,
              responses={422: {"description": "invalid name", **_PROBLEM}},
              summary="Change the signed-in account's name")
async def change_me(body: ProfileIn, user_id: CurrentUserId, uow: IdentityUow,
                    services: Services) -> dict[str, Any]:
    return me_json(await services.accounts.rename(uow, user_id, body.name))


@router.post("/me/addresses", status_code=201, response_model=AddressOut, dependencies=_PERSONAL,
             responses={409: {"description": "address book full", **_PROBLEM}},
             summary="Add an address to the signed-in account")
async def add_address(body: AddressIn, user_id: CurrentUserId, uow: IdentityUow,
                      services: Services, response: Response) -> dict[str, Any]:
    address = await services.accounts.add_address(uow, user_id, _address_in(body))
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


# Callers that may state and read accounts whole, password hashes included: the strangler-fig
# migration's sync process (ADR 0031), with its own signed service identity. Nobody else,
# admins included: a hash is never shown to a person.
RECORD_CALLERS = frozenset({"sync"})


@responds(403, "Not the migration's sync (a verified service identity)")
async def record_caller(caller: ServiceCaller) -> str:
    if caller not in RECORD_CALLERS:
        raise Forbidden("account records are for the migration's sync, with its verified "
                        "service identity")
    return caller


RecordCaller = Annotated[str, Depends(record_caller)]


def _address_in(body: AddressIn) -> NewAddress:
    return NewAddress(name=body.name, line1=body.line1, line2=body.line2, city=body.city,
                      postal_code=body.postal_code, country=body.country, phone=body.phone)


@router.put("/accounts/{user_id}", response_model=AccountRecordOut, dependencies=_PERSONAL,
            responses={201: {"description": "created under this id"},
                       409: {"description": "another account has this email", **_PROBLEM},
                       412: {"description": "If-Match names another version", **_PROBLEM},
                       422: {"description": "invalid email, name or hash", **_PROBLEM}},
            summary="State an account whole under its id (the migration's sync)")
async def record_account(user_id: uuid.UUID, body: AccountRecordIn, _: RecordCaller,
                         uow: IdentityUow, services: Services, response: Response,
                         if_match: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    done = await services.accounts.record_account(
        uow, user_id, AccountRecord(email=body.email, name=body.name,
                                    password_hash=body.password_hash), if_match=if_match)
    response.status_code = 201 if done.created else 200
    response.headers["ETag"] = account_etag(done.user)
    user, addresses = await services.accounts.account_record(uow, user_id)
    return account_record_json(user, addresses)


@router.get("/accounts", response_model=AccountIdsOut,
            summary="Account ids in id order, a page after ``after`` (the migration's sync)")
async def list_account_ids(_: RecordCaller, uow: IdentityUow, services: Services,
                           after: uuid.UUID | None = None,
                           limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    return {"ids": [str(i) for i in await services.accounts.account_ids(uow, after, limit)]}


@router.get("/accounts/{user_id}", response_model=AccountRecordOut, dependencies=_PERSONAL,
            responses={404: {"description": "no such account", **_PROBLEM}},
            summary="An account as stored, hash and addresses included (the migration's sync)")
async def read_account_record(user_id: uuid.UUID, _: RecordCaller, uow: IdentityUow,
                              services: Services, response: Response) -> dict[str, Any]:
    user, addresses = await services.accounts.account_record(uow, user_id)
    response.headers["ETag"] = account_etag(user)
    return account_record_json(user, addresses)


@router.put("/accounts/{user_id}/addresses/{address_id}", response_model=AddressOut,
            dependencies=_PERSONAL,
            responses={201: {"description": "created under this id"},
                       404: {"description": "no such account", **_PROBLEM},
                       409: {"description": "the address is another account's", **_PROBLEM}},
            summary="State one of an account's addresses under its id (the migration's sync)")
async def record_address(user_id: uuid.UUID, address_id: uuid.UUID, body: AddressIn,
                         _: RecordCaller, uow: IdentityUow, services: Services,
                         response: Response) -> dict[str, Any]:
    address, created = await services.accounts.record_address(uow, user_id, address_id,
                                                              _address_in(body))
    response.status_code = 201 if created else 200
    return address_json(address)


@router.post("/admin/keys/rotate", response_model=KeyRotatedOut,
             summary="Start signing with a new key (admin); the old one stays published "
                     "until the tokens it signed have expired")
async def rotate_key(_: AdminPrincipal, services: Services) -> dict[str, str]:
    return {"kid": await rotate_signing_key(services.keys)}


def _client_json(client: OAuthClient) -> dict[str, Any]:
    return {"client_id": client.client_id, "redirect_uris": list(client.redirect_uris),
            "confidential": client.confidential}


@router.post("/admin/clients", status_code=201, response_model=ClientCreatedOut,
             responses={409: {"description": "a client with this id exists", **_PROBLEM},
                        422: {"description": "invalid client id or redirect URI", **_PROBLEM}},
             summary="Register an OAuth 2 client (admin); a confidential one's secret is "
                     "made here and shown only in this answer")
async def register_client(body: ClientIn, _: AdminPrincipal, uow: IdentityUow,
                          services: Services) -> JSONResponse:
    secret = secrets.token_urlsafe(32) if body.confidential else None
    client, _created = await services.clients.register(
        uow, client_id=body.client_id, redirect_uris=body.redirect_uris, secret=secret,
        replace=False)
    return JSONResponse({**_client_json(client), "client_secret": secret}, status_code=201,
                        headers={"Cache-Control": "no-store",
                                 "Location": f"{PREFIX}/admin/clients"})


@router.get("/admin/clients", response_model=ClientListOut,
            summary="The registered OAuth 2 clients (admin)")
async def list_clients(_: AdminPrincipal, uow: IdentityUow,
                       services: Services) -> dict[str, Any]:
    return {"items": [_client_json(c) for c in await services.clients.list(uow)]}


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
