"""The OpenAPI document a service publishes lists every error its routes really return.

FastAPI documents the success answer and a 422 in its own shape; mercato's errors are
problem+json (``chassis.errors``) and come from more places: the token check, the role
checks, the body limit, the edge's rate limits, a dependency that is down. The chassis derives
them from what each route is built of, so a service declares only what its handlers add
(``responses={409: {"description": "..."}}``, no content needed):

* every route: 400 (a request the edge refuses: a header name with an underscore, an encoded
  slash in the path; a body that cannot be parsed), 429 (the edge's per-client limits;
  identity's sign-in throttling) and 503 (the database, the identity keys or another service
  unreachable; overload);
* a route with visible parameters or a body: 422, problem+json with ``errors``;
* a route with a body: 413 (the chassis's and the edge's body limit);
* a route with path parameters: 404 (nothing there); a text path parameter without a
  pattern of its own gets the edge's: no slash or backslash, not "." or "..";
* a route depending on a dependency marked with ``responds`` (the token check: 401 and the
  bearer security requirement; the admin check: 403; a service's own role checks).

Every 4xx/5xx answer documented without a body gets the problem+json schema. The document is
built once, on first request, from the routes as they are then.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from chassis.errors import PROBLEM_JSON

PROBLEM_REF = "#/components/schemas/Problem"
BEARER = "bearer"
_MARK = "__mercato_responses__"
_HEADER_MARK = "__mercato_headers__"

# RFC 9457 problem details as every mercato service and the edge write them.
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An error (RFC 9457 problem details). A 422 lists what was wrong in "
                   "`errors`; other members may follow.",
    "type": "object",
    "required": ["type", "status"],
    "properties": {
        "type": {"type": "string", "description": "always about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "the request's path"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {"type": "array",
                            "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}

# What the edge lets through as one path segment: it refuses an encoded slash or backslash
# (400) and resolves "." and ".." (normalize_path), so those never reach the route.
PATH_SEGMENT = r"^(?:[^/\\.][^/\\]*|\.[^/\\.][^/\\]*|\.\.[^/\\]+)$"
TOKEN_URL = "/api/identity/token"  # noqa: S105 - a path, no secret
# Routes require ``bearer``; ``password`` says where a bearer token comes from (the OAuth 2
# password grant at identity), so the docs page can sign in and fetch one.
SECURITY_SCHEMES: dict[str, Any] = {
    BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
             "description": f"an access token from POST {TOKEN_URL}"},
    "password": {"type": "oauth2", "description": "sign in with an email and password",
                 "flows": {"password": {"tokenUrl": TOKEN_URL, "scopes": {}}}},
}

_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                                "schema": {"type": "integer", "minimum": 0}}}
_WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "Bearer realm=\"mercato\"",
                                          "schema": {"type": "string"}}}

DESCRIPTIONS: dict[int, str] = {
    400: "The request is malformed: refused by the edge (a header name with an underscore, "
         "an encoded slash in the path), a body that cannot be parsed, or a rule of the route",
    401: "No bearer token, or it is malformed, expired or signed by an unknown key",
    403: "The token lacks the role this needs",
    404: "Not found",
    409: "Conflict with the current state",
    412: "Precondition failed",
    413: "The body is larger than the limit (1 MiB unless the route says otherwise)",
    422: "A parameter or the body does not match the schema; `errors` says which",
    429: "Too many requests from this client (the edge's rate limits, sign-in throttling); "
         "see Retry-After",
    503: "A dependency (the database, the identity keys, another service) is unavailable or "
         "the service is overloaded; try again later",
}
_HEADERS: dict[int, dict[str, Any]] = {401: _WWW_AUTHENTICATE, 429: _RETRY_AFTER,
                                       503: _RETRY_AFTER}
ALWAYS = (400, 429, 503)

F = TypeVar("F", bound=Callable[..., Any])


def responds(status: int, description: str | None = None) -> Callable[[F], F]:
    """Mark a dependency: every route that depends on it (directly or not) may answer
    ``status``. ``responds(401)`` also gives the route the bearer security requirement."""

    def mark(dependency: F) -> F:
        marks: dict[int, str] = dict(getattr(dependency, _MARK, {}))
        marks[status] = description or DESCRIPTIONS.get(status, "Error")
        setattr(dependency, _MARK, marks)
        return dependency

    return mark


def reads_header(name: str, schema: dict[str, Any], description: str) -> Callable[[F], F]:
    """Mark a dependency that reads a required request header itself (to answer its own
    status when it is missing, e.g. 400 rather than FastAPI's 422): the routes depending on
    it document the header as a required parameter."""

    def mark(dependency: F) -> F:
        headers = [*getattr(dependency, _HEADER_MARK, []),
                   {"name": name, "in": "header", "required": True, "schema": schema,
                    "description": description}]
        setattr(dependency, _HEADER_MARK, headers)
        return dependency

    return mark


def exactly_one_of(*fields: str) -> dict[str, Any]:
    """JSON Schema for a model that takes exactly one of ``fields`` (the others absent or
    null), for its ``json_schema_extra``: what a model validator checks, said in the schema."""
    return {"oneOf": [{"required": [name], "properties": {name: {"not": {"type": "null"}}}}
                      for name in fields]}


def _dependants(root: Dependant) -> Iterator[Dependant]:
    stack = [root]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(current.dependencies)


def _visible(fields: list[Any]) -> bool:
    return any(getattr(f.field_info, "include_in_schema", True) for f in fields)


def route_headers(root: Dependant) -> list[dict[str, Any]]:
    """The headers the dependencies of a route read themselves (``reads_header``)."""
    return [header for dependant in _dependants(root)
            for header in getattr(dependant.call, _HEADER_MARK, [])]


def route_errors(root: Dependant) -> dict[int, str]:
    """The error statuses a route whose dependency tree is ``root`` may answer."""
    errors: dict[int, str] = {}
    # A header a dependency reads itself has no FastAPI field; its dependency says its status.
    has_params = has_body = has_path = False
    for dependant in _dependants(root):
        for status, description in getattr(dependant.call, _MARK, {}).items():
            errors.setdefault(status, description)
        has_path = has_path or _visible(dependant.path_params)
        has_params = has_params or _visible([*dependant.path_params, *dependant.query_params,
                                              *dependant.header_params,
                                              *dependant.cookie_params])
        has_body = has_body or bool(dependant.body_params)
    if has_path:
        errors[404] = DESCRIPTIONS[404]
    if has_body:
        errors[413] = DESCRIPTIONS[413]
    if has_params or has_body:
        errors[422] = DESCRIPTIONS[422]
    for status in ALWAYS:
        errors[status] = DESCRIPTIONS[status]
    return errors


def _problem_content() -> dict[str, Any]:
    return {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}


def _is_fastapi_422(response: dict[str, Any]) -> bool:
    schemas = [m.get("schema", {}) for m in (response.get("content") or {}).values()]
    return any(s.get("$ref", "").endswith("/HTTPValidationError") for s in schemas)


def declare_errors(operation: dict[str, Any], errors: dict[int, str],
                   headers: list[dict[str, Any]] | None = None) -> None:
    """Complete one operation of the document with ``errors`` (from ``route_errors``) and
    the headers its dependencies read themselves (``route_headers``)."""
    parameters: list[dict[str, Any]] = operation.get("parameters", [])
    known = {(p.get("in"), str(p.get("name")).lower()) for p in parameters}
    for header in headers or ():
        if ("header", header["name"].lower()) not in known:
            parameters.append(header)
    for parameter in parameters:
        schema = parameter.get("schema", {})
        if parameter.get("in") == "path" and schema.get("type") == "string" \
                and not {"pattern", "format", "enum", "const"} & set(schema):
            schema["pattern"] = PATH_SEGMENT
    if parameters:
        operation["parameters"] = parameters
    responses: dict[str, Any] = operation.setdefault("responses", {})
    # FastAPI adds its own 422 to any route with a parameter, hidden ones (the token's
    # Authorization header) included; the route's errors say whether there is one.
    if "422" in responses and _is_fastapi_422(responses["422"]):
        del responses["422"]
    for status, description in errors.items():
        responses.setdefault(str(status), {"description": description})
    for key, response in responses.items():
        if not key.isdigit() or int(key) < 400:
            continue
        status = int(key)
        content = response.get("content") or {}
        # A route's own entry may name problem+json with no schema, or say nothing at all.
        if not any(media.get("schema") for media in content.values()):
            response["content"] = _problem_content()
        if status in _HEADERS:
            response.setdefault("headers", _HEADERS[status])
    if "401" in responses:
        operation.setdefault("security", [{BEARER: []}])
    operation["responses"] = dict(sorted(responses.items()))


def _drop_unreferenced_validation_schemas(document: dict[str, Any]) -> None:
    schemas = document.get("components", {}).get("schemas", {})
    text = json.dumps(document.get("paths", {}))
    if "#/components/schemas/HTTPValidationError" not in text:
        schemas.pop("HTTPValidationError", None)
        if "#/components/schemas/ValidationError" not in text:
            schemas.pop("ValidationError", None)


def _operations(app: FastAPI) -> Iterator[
        tuple[str, str, dict[int, str], list[dict[str, Any]]]]:
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        # The effective route: prefixes and dependencies of the routers it was included by.
        errors, headers = route_errors(context.dependant), route_headers(context.dependant)
        for method in sorted(context.methods or ()):
            yield str(context.path_format), method.lower(), errors, headers


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi`` declare every route's errors (see the module docstring)."""
    done: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        document = FastAPI.openapi(app)  # cached by FastAPI until the routes change
        if done and done[0] is document:
            return document
        for path, method, errors, headers in _operations(app):
            operation = document.get("paths", {}).get(path, {}).get(method)
            if operation is not None:
                declare_errors(operation, errors, headers)
        _drop_unreferenced_validation_schemas(document)
        components = document.setdefault("components", {})
        components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        if "\"security\"" in json.dumps(document.get("paths", {})):
            components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
        done[:] = [document]
        return document

    app.openapi = openapi  # type: ignore[method-assign]
