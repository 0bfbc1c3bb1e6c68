"""problem+json (RFC 9457) errors: one shape for every client and server error.

Domain code raises ``ProblemError`` subclasses; the handlers here turn those, validation
errors, HTTP errors and the database's own refusals into problem documents. A client error
must never surface as a 500, so constraint and data errors from PostgreSQL map to 409/422.
A dependency that is briefly unavailable (the database restarting, refusing connections or
out of them; the broker gone) is a 503 with ``Retry-After``: the client should come back,
nothing is wrong with its request or with the code. Anything else unexpected stays a 500.
"""

from __future__ import annotations

import errno
import socket
from http import HTTPStatus
from typing import Any

import asyncpg
import nats.errors
import nats.js.errors
import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = "2"
log = structlog.get_logger("chassis.errors")

# PostgreSQL SQLSTATE classes and codes that say "not now" rather than "never": connection
# exceptions (08), insufficient resources (53: too many connections, out of memory or disk),
# operator intervention (57: shutting down, starting up, a cancelled statement), system errors
# (58), and the conflicts a repeat resolves (serialization failure, deadlock, lock not
# available).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57", "58")
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
_NETWORK_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED,
                             errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTUNREACH,
                             errno.EHOSTDOWN, errno.ETIMEDOUT, errno.EPIPE})
# The broker's failures that pass: no connection (yet, or any more), no answer in time, no
# responder, JetStream itself unavailable. Bad subjects, payloads or API requests are bugs.
_BROKER_UNAVAILABLE = (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError,
                       nats.errors.ConnectionReconnectingError, nats.errors.NoServersError,
                       nats.errors.NoRespondersError, nats.errors.OutboundBufferLimitError,
                       nats.errors.StaleConnectionError, nats.errors.UnexpectedEOF,
                       nats.errors.FlushTimeoutError, nats.js.errors.ServiceUnavailableError,
                       nats.js.errors.ServerError, nats.js.errors.NoStreamResponseError)
# TimeoutError: a dependency did not answer in time (nats-py's own subclasses it).
_UNAVAILABLE = (asyncpg.exceptions.ConnectionDoesNotExistError, PoolTimeoutError,
                ConnectionError, TimeoutError, socket.gaierror, *_BROKER_UNAVAILABLE)


def _sqlstate(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None) or getattr(getattr(exc, "orig", None), "sqlstate", None)
    return state if isinstance(state, str) else ""


def _transient_sqlstate(state: str) -> bool:
    return state.startswith(_TRANSIENT_SQLSTATE_CLASSES) or state in _TRANSIENT_SQLSTATES


def dependency_unavailable(exc: BaseException) -> bool:
    """Did ``exc`` come from a dependency that is briefly unavailable (answer 503), rather
    than from a bug (500)? Follows explicit causes (``raise … from``), not the context of
    whatever was being handled when a new error was raised."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        seen += 1
        if isinstance(current, DBAPIError):
            if current.connection_invalidated or _transient_sqlstate(_sqlstate(current)):
                return True
        elif isinstance(current, asyncpg.PostgresError):
            # Raised as is by asyncpg when connecting ("the database system is starting up",
            # "too many clients"); SQLAlchemy wraps only errors on an open connection.
            if _transient_sqlstate(_sqlstate(current)):
                return True
        elif isinstance(current, _UNAVAILABLE):
            return True
        elif isinstance(current, OSError) and (
                current.errno in _NETWORK_ERRNOS
                or (type(current) is OSError and current.errno is None)):
            # asyncio raises a bare OSError("Multiple exceptions: …") when every address of a
            # host refused; file errors are subclasses (FileNotFoundError …): bugs, not this.
            return True
        current = current.__cause__ or getattr(current, "orig", None)
    return False


class ProblemResponse(Response):
    media_type = PROBLEM_JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ProblemError(Exception):
    status: int = 400
    title: str = "Bad request"

    def __init__(self, detail: str | None = None, *, title: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail or title or self.title)
        self.detail = detail
        if title:
            self.title = title
        self.headers = headers
        self.extra = extra


class BadRequest(ProblemError):
    status, title = 400, "Bad request"


class Unauthorized(ProblemError):
    status, title = 401, "Unauthorized"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="mercato"'})
        super().__init__(detail, **kw)


class Forbidden(ProblemError):
    status, title = 403, "Forbidden"


class NotFound(ProblemError):
    status, title = 404, "Not found"


class Conflict(ProblemError):
    status, title = 409, "Conflict"


class PreconditionFailed(ProblemError):
    status, title = 412, "Precondition failed"


class Unprocessable(ProblemError):
    status, title = 422, "Unprocessable content"


class TooManyRequests(ProblemError):
    status, title = 429, "Too many requests"


class ServiceUnavailable(ProblemError):
    status, title = 503, "Service unavailable"


def problem_response(status: int, title: str | None = None, detail: str | None = None, *,
                     instance: str | None = None, headers: dict[str, str] | None = None,
                     **extra: Any) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    return ProblemResponse(body, status_code=status, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # The raw "input" is left out on purpose: it may hold a password or a huge body.
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]


async def _on_problem(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.status, exc.title, exc.detail, instance=request.url.path,
                            headers=exc.headers, **exc.extra)


async def _on_validation(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(422, "Invalid request", "the request did not match the schema",
                            instance=request.url.path, errors=_validation_errors(exc))


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path: Starlette's 405 names only the first
    route that matched the path, but RFC 9110 wants the resource's."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        if route.methods and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods
    return ", ".join(sorted(methods))


async def _on_http(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return problem_response(exc.status_code, None, detail, instance=request.url.path,
                            headers=headers)


async def _on_db(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, DBAPIError)
    sqlstate = _sqlstate(exc)
    if isinstance(exc, IntegrityError) or sqlstate.startswith("23"):
        return problem_response(409, "Conflict", "the change conflicts with existing data",
                                instance=request.url.path)
    # Data exceptions (out of range, bad text representation) and program limits a value
    # can hit (an index row too large): the input's fault.
    if sqlstate.startswith(("22", "54")):
        return problem_response(422, "Invalid value", "a value is out of range or malformed",
                                instance=request.url.path)
    return await _on_unexpected(request, exc)


def _unavailable(request: Request, exc: BaseException) -> ProblemResponse:
    log.warning("dependency_unavailable", path=request.url.path,
                error=f"{type(exc).__name__}: {exc}"[:300])
    return problem_response(503, "Service unavailable",
                            "a dependency of this service is briefly unavailable; "
                            "try again shortly", instance=request.url.path,
                            headers={"Retry-After": RETRY_AFTER_S})


async def _on_unexpected(request: Request, exc: Exception) -> ProblemResponse:
    if dependency_unavailable(exc):
        return _unavailable(request, exc)
    log.exception("unhandled_error", path=request.url.path)
    # Starlette answers this one outside every middleware, the security headers' too.
    return problem_response(500, "Internal server error", "an unexpected error occurred",
                            instance=request.url.path,
                            headers={"X-Content-Type-Options": "nosniff"})


# The exception types a dependency's outage raises get their own handler: one for plain
# ``Exception`` runs outside every middleware (the metrics would count a 500) and has
# Starlette log the error again. A bug among them (FileNotFoundError is an OSError) is
# still a 500 here.
_DEPENDENCY_ERRORS = (OSError, asyncpg.PostgresError, PoolTimeoutError, nats.errors.Error)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(DBAPIError, _on_db)
    for error_type in _DEPENDENCY_ERRORS:
        app.add_exception_handler(error_type, _on_unexpected)
    app.add_exception_handler(Exception, _on_unexpected)
