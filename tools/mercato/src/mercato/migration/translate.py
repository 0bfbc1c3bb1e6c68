"""The anti-corruption layer's translations: legacy requests answered from the services, in
the legacy shapes its clients know: catalog reads, and identity (below, ADR 0032).

Legacy                                 Services
GET /shop/products?page&page_size      GET /api/catalog/products?page&page_size&q&category=<slug>
    &q&category=<int>                  + GET /api/inventory/stock?sku=... (one call per page)
GET /shop/products/<int>               GET /api/catalog/products/<uuid> + its stock
GET /shop/categories                   GET /api/catalog/categories

Shapes: integer ids ⇄ UUIDs (``ids``), category ``{id, name}`` ⇄ a slug, ``active`` ⇄
``status``, ``in_stock`` (legacy: on hand) ⇄ inventory's ``on_hand``, money amounts with two
decimals ⇄ the currency's own (``"12900.00"`` ⇄ ``"12900"``); the catalog's version and
timestamps have no legacy counterpart and are dropped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mercato.migration import ids


@dataclass(frozen=True)
class Answer:
    """One side's answer: HTTP status and JSON body, or an error (no answer at all)."""

    status: int
    body: Any = None
    error: str | None = None
    # Headers the legacy client must get (identity: the session cookie); pairs, as
    # Set-Cookie may repeat.
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def failed(self) -> bool:
        return self.error is not None or self.status >= 500


Fetch = Callable[[str, Mapping[str, str | list[str]]], Awaitable[Answer]]


class NotTranslated(Exception):
    """The request has no services counterpart (yet): answered 501 by the ACL."""


def problem(status: int, title: str, detail: str) -> Answer:
    return Answer(status, {"type": "about:blank", "title": title, "status": status,
                           "detail": detail})


def _int(query: Mapping[str, str], name: str, default: int | None, low: int,
         high: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be {low}..{high}, not {value}")
    return value


def legacy_money(money: Mapping[str, Any]) -> dict[str, str]:
    """The legacy shape: always two decimals."""
    try:
        amount = Decimal(str(money["amount"]))
    except (KeyError, InvalidOperation):
        return dict(money)
    return {"amount": f"{amount:.2f}", "currency": str(money.get("currency", ""))}


def legacy_product(p: Mapping[str, Any], categories: Mapping[str, Mapping[str, Any]],
                   on_hand: Mapping[str, int]) -> dict[str, Any]:
    cat = categories.get(str(p.get("category")), {})
    return {"id": ids.legacy_id("products", str(p["id"])), "sku": p["sku"], "name": p["name"],
            "description": p.get("description", ""), "price": legacy_money(p["price"]),
            "active": p.get("status") == "active",
            "category": {"id": cat.get("legacy_id"), "name": cat.get("name")},
            "in_stock": on_hand.get(str(p["sku"]), 0)}


async def _categories(fetch: Fetch) -> tuple[Answer, dict[str, dict[str, Any]]]:
    """The catalog's categories by slug, each with its legacy id (None if born in the
    services)."""
    got = await fetch("/api/catalog/categories", {})
    if got.status != 200 or not isinstance(got.body, dict):
        return got, {}
    return got, {c["slug"]: {"legacy_id": ids.legacy_id("categories", c["id"]),
                             "name": c["name"], "id": c["id"]}
                 for c in got.body.get("items", [])}


async def _stock(fetch: Fetch, skus: list[str]) -> tuple[Answer | None, dict[str, int]]:
    if not skus:
        return None, {}
    got = await fetch("/api/inventory/stock", {"sku": skus})
    if got.status != 200 or not isinstance(got.body, dict):
        return got, {}
    return None, {s["sku"]: int(s["on_hand"]) for s in got.body.get("items", [])}


def _upstream_failure(got: Answer) -> Answer:
    if got.error is not None or got.status >= 500:
        return problem(502, "Bad Gateway", f"the services could not answer "
                       f"({got.error or got.status})")
    return got  # a 4xx of theirs is the client's problem in either shape


async def answer(method: str, path: str, query: Mapping[str, str], fetch: Fetch) -> Answer:
    """The legacy answer to a legacy request, built from the services' answers."""
    if method not in ("GET", "HEAD"):
        raise NotTranslated(f"{method} {path}")
    parts = [p for p in path.split("/") if p]
    try:
        if parts == ["shop", "categories"]:
            return await _list_categories(fetch)
        if parts == ["shop", "products"]:
            return await _list_products(query, fetch)
        if len(parts) == 3 and parts[:2] == ["shop", "products"]:
            return await _one_product(parts[2], fetch)
    except ValueError as exc:
        return problem(422, "Unprocessable Entity", str(exc))
    raise NotTranslated(f"{method} {path}")


async def _list_categories(fetch: Fetch) -> Answer:
    got, by_slug = await _categories(fetch)
    if got.status != 200:
        return _upstream_failure(got)
    items = [{"id": c["legacy_id"], "name": c["name"], "parent_id": None}
             for c in by_slug.values()]
    return Answer(200, sorted(items, key=lambda c: (c["name"], c["id"] or 0)))


async def _list_products(query: Mapping[str, str], fetch: Fetch) -> Answer:
    page = _int(query, "page", 1, 1, 100_000)
    size = _int(query, "page_size", 20, 1, 100)
    category = _int(query, "category", None, 1, 2**62)
    q = query.get("q")
    if q is not None and (len(q) > 100 or "\x00" in q):
        raise ValueError("q is at most 100 characters")
    got, by_slug = await _categories(fetch)
    if got.status != 200:
        return _upstream_failure(got)
    params: dict[str, str | list[str]] = {"page": str(page), "page_size": str(size)}
    if q:
        params["q"] = q
    if category is not None:
        slug = next((s for s, c in by_slug.items() if c["legacy_id"] == category), None)
        if slug is None:  # legacy answers an empty page for an unknown category too
            return Answer(200, {"items": [], "total": 0, "page": page, "page_size": size})
        params["category"] = slug
    got = await fetch("/api/catalog/products", params)
    if got.status != 200 or not isinstance(got.body, dict):
        return _upstream_failure(got)
    items = got.body.get("items", [])
    failed, on_hand = await _stock(fetch, [str(p["sku"]) for p in items])
    if failed is not None:
        return _upstream_failure(failed)
    return Answer(200, {"items": [legacy_product(p, by_slug, on_hand) for p in items],
                        "total": got.body.get("total", 0), "page": page, "page_size": size})


async def _one_product(raw_id: str, fetch: Fetch) -> Answer:
    try:
        legacy = int(raw_id)
    except ValueError:
        raise ValueError(f"a product id is an integer, not {raw_id!r}") from None
    if not 1 <= legacy <= ids.MAX_ID:
        return problem(404, "No such product", f"product {legacy} does not exist")
    got = await fetch(f"/api/catalog/products/{ids.services_id('products', legacy)}", {})
    if got.status == 404:
        return problem(404, "No such product", f"product {legacy} does not exist")
    if got.status != 200 or not isinstance(got.body, dict):
        return _upstream_failure(got)
    cats, by_slug = await _categories(fetch)
    if cats.status != 200:
        return _upstream_failure(cats)
    failed, on_hand = await _stock(fetch, [str(got.body["sku"])])
    if failed is not None:
        return _upstream_failure(failed)
    return Answer(200, legacy_product(got.body, by_slug, on_hand))


# -- identity -------------------------------------------------------------------------------
#
# Legacy                                 Services
# POST /shop/register {email,password,   POST /api/identity/register
#      name}
# POST /shop/login {email,password}      POST /api/identity/token (password grant); the access
#                                        token answered as the legacy {token, token_type,
#                                        expires_in} and set as the legacy_session cookie
# POST /shop/logout                      nothing to revoke for a services token (stateless,
#                                        short); the cookie is cleared. A legacy session is
#                                        ended at the monolith by the ACL (acl.py)
# GET  /shop/me                          GET /api/identity/me
# GET  /shop/addresses                   GET /api/identity/me/addresses
# POST /shop/addresses {recipient,...}   POST /api/identity/me/addresses {name,...}
#
# The customer's token reaching identity is a services access token: a JWT the client got
# from a translated /shop/login, or one the ACL exchanged a legacy session for (ADR 0032).
# Ids: legacy integers from the id scheme; an account or address born in the services has
# none until the sync writes it into the monolith, and ``id`` is null until then (its
# ``services_id`` always says which account it is). Bodies are checked as the monolith checks
# them first, so a client gets the monolith's 422 for what the monolith would refuse.

COOKIE = "legacy_session"  # the monolith's cookie: same name, path and flags
LOGOUT_COOKIE = (f'{COOKIE}=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; '
                 "Path=/shop; SameSite=lax")
PUBLIC_IDENTITY = frozenset({("POST", "/shop/register"), ("POST", "/shop/login")})
IDENTITY_ROUTES = {"/shop/register": ("POST",), "/shop/login": ("POST",),
                   "/shop/logout": ("POST",), "/shop/me": ("GET",),
                   "/shop/addresses": ("GET", "POST")}


class Call(Protocol):
    """A call to the services: JSON or form body, the customer's access token."""

    async def __call__(self, method: str, path: str, *, token: str | None = None,
                       json_body: Any = None,
                       form: Mapping[str, str] | None = None) -> Answer: ...


class LegacyBody(BaseModel):
    # As the monolith's request models (legacy.app.Body): strict keys, stripped strings.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def no_nul(cls, value: Any) -> Any:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class LegacyRegistration(LegacyBody):
    email: str = Field(max_length=254)
    password: str = Field(max_length=128)
    name: str = Field(min_length=1, max_length=200)


class LegacyLogin(LegacyBody):
    email: str = Field(max_length=254)
    password: str = Field(max_length=128)


class LegacyAddress(LegacyBody):
    recipient: str = Field(min_length=1, max_length=200)
    line1: str = Field(min_length=1, max_length=300)
    city: str = Field(min_length=1, max_length=100)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(default="KR", pattern=r"^[A-Z]{2}$")


NOT_SIGNED_IN = problem(401, "Not signed in", "log in with POST /shop/login")


def session_cookie(token: str, max_age: int) -> str:
    return f"{COOKIE}={token}; HttpOnly; Max-Age={max_age}; Path=/shop; SameSite=lax"


def _invalid(exc: ValidationError) -> Answer:
    got = problem(422, "Invalid request", "the request does not match the API")
    return Answer(422, {**got.body, "errors": [
        {"loc": ["body", *e.get("loc", ())], "msg": e.get("msg")} for e in exc.errors()][:20]})


LegacyBodyT = TypeVar("LegacyBodyT", bound=LegacyBody)


def _parse(model: type[LegacyBodyT], raw: bytes) -> LegacyBodyT | Answer:
    try:
        return model.model_validate_json(raw or b"null")
    except ValidationError as exc:
        return _invalid(exc)


def legacy_me(user: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": ids.legacy_id("customers", str(user["id"])), "email": user["email"],
            "name": user["name"], "is_admin": "admin" in (user.get("roles") or []),
            "services_id": str(user["id"])}


def legacy_address(a: Mapping[str, Any]) -> dict[str, Any]:
    # line2 and phone have no legacy column: the monolith's addresses never had them.
    return {"id": ids.legacy_id("addresses", str(a["id"])), "recipient": a["name"],
            "line1": a["line1"], "city": a["city"], "postal_code": a["postal_code"],
            "country": a["country"], "services_id": str(a["id"])}


def _refused(got: Answer) -> Answer | None:
    """The legacy answer to a services refusal every identity route shares, or None."""
    if got.status == 401:
        return NOT_SIGNED_IN
    if got.status == 429:  # the edge's limit or identity's sign-in throttle
        return Answer(429, problem(429, "Too many requests", "try again later").body,
                      headers=got.headers)
    if got.status == 422:
        detail = got.body.get("detail") if isinstance(got.body, dict) else None
        return problem(422, "Invalid request", str(detail or "the request is not valid"))
    if got.error is not None or got.status >= 500:
        return _upstream_failure(got)
    return None


async def identity_answer(method: str, path: str, body: bytes, token: str | None,
                          call: Call) -> Answer:
    """The legacy answer to an identity request, from identity. ``token``: the customer's
    services access token (None: not signed in, or a public route)."""
    methods = IDENTITY_ROUTES.get(path)
    if methods is None:
        return problem(404, "Not Found", "Not Found")
    if method not in methods:
        return problem(405, "Method Not Allowed", "Method Not Allowed")
    if (method, path) == ("POST", "/shop/register"):
        return await _register(body, call)
    if (method, path) == ("POST", "/shop/login"):
        return await _login(body, call)
    if token is None:  # the monolith checks the session before the body
        return NOT_SIGNED_IN
    if path == "/shop/logout":
        return await _logout(token, call)
    if path == "/shop/me":
        got = await call("GET", "/api/identity/me", token=token)
        if got.status == 200 and isinstance(got.body, dict):
            return Answer(200, legacy_me(got.body))
        return _refused(got) or _upstream_failure(got)
    if method == "GET":
        got = await call("GET", "/api/identity/me/addresses", token=token)
        if got.status == 200 and isinstance(got.body, dict):
            return Answer(200, [legacy_address(a) for a in got.body.get("items", [])])
        return _refused(got) or _upstream_failure(got)
    return await _add_address(body, token, call)


async def _register(body: bytes, call: Call) -> Answer:
    parsed = _parse(LegacyRegistration, body)
    if isinstance(parsed, Answer):
        return parsed
    got = await call("POST", "/api/identity/register", json_body=parsed.model_dump())
    if got.status == 201 and isinstance(got.body, dict):
        return Answer(201, {"id": ids.legacy_id("customers", str(got.body["id"])),
                            "email": got.body["email"], "name": got.body["name"]})
    if got.status == 409:
        return problem(409, "Email taken", "an account with this email exists")
    return _refused(got) or _upstream_failure(got)


async def _login(body: bytes, call: Call) -> Answer:
    parsed = _parse(LegacyLogin, body)
    if isinstance(parsed, Answer):
        return parsed
    got = await call("POST", "/api/identity/token", form={
        "grant_type": "password", "username": parsed.email, "password": parsed.password})
    if got.status == 200 and isinstance(got.body, dict):
        token, expires_in = str(got.body["access_token"]), int(got.body["expires_in"])
        # The refresh token stays behind: legacy clients have no use for one, and one kept
        # here would be a session the ACL would have to guard (ADR 0032).
        return Answer(200, {"token": token, "token_type": "bearer", "expires_in": expires_in},
                      headers=(("set-cookie", session_cookie(token, expires_in)),))
    if got.status == 400 and isinstance(got.body, dict) \
            and got.body.get("error") == "invalid_grant":
        return problem(401, "Wrong email or password", "check both and try again")
    return _refused(got) or _upstream_failure(got)


async def _logout(token: str, call: Call) -> Answer:
    # A services access token cannot be revoked (no refresh token was handed out, and the
    # access token lives minutes): signing out checks it and clears the cookie.
    got = await call("GET", "/api/identity/me", token=token)
    if got.status == 200:
        return Answer(204, None, headers=(("set-cookie", LOGOUT_COOKIE),))
    return _refused(got) or _upstream_failure(got)


async def _add_address(body: bytes, token: str, call: Call) -> Answer:
    parsed = _parse(LegacyAddress, body)
    if isinstance(parsed, Answer):
        return parsed
    got = await call("POST", "/api/identity/me/addresses", token=token, json_body={
        "name": parsed.recipient, "line1": parsed.line1, "city": parsed.city,
        "postal_code": parsed.postal_code, "country": parsed.country})
    if got.status == 201 and isinstance(got.body, dict):
        return Answer(201, legacy_address(got.body))
    if got.status == 409:
        return problem(409, "Address book full", str(got.body.get("detail", ""))
                       if isinstance(got.body, dict) else "address book full")
    return _refused(got) or _upstream_failure(got)
