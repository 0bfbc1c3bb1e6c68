"""problem+json (RFC 9457) errors: one shape for every client and server error.

Domain code raises ``ProblemError`` subclasses; the handlers here turn those, validation
errors, HTTP errors and the database's own refusals into problem documents. A client error
must never surface as a 500, so constraint and data errors from PostgreSQL map to 409/422.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger("chassis.errors")


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


async def _on_http(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem_response(exc.status_code, None, detail, instance=request.url.path,
                            headers=getattr(exc, "headers", None))


async def _on_db(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, DBAPIError)
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None) or ""
    if isinstance(exc, IntegrityError) or sqlstate.startswith("23"):
        return problem_response(409, "Conflict", "the change conflicts with existing data",
                                instance=request.url.path)
    if sqlstate.startswith("22"):  # data exception: out of range, bad text representation
        return problem_response(422, "Invalid value", "a value is out of range or malformed",
                                instance=request.url.path)
    log.exception("database_error", path=request.url.path)
    return problem_response(503, "Service unavailable", "the database could not answer",
                            instance=request.url.path)


async def _on_unexpected(request: Request, exc: Exception) -> ProblemResponse:
    log.exception("unhandled_error", path=request.url.path)
    # Starlette answers this one outside every middleware, the security headers' too.
    return problem_response(500, "Internal server error", "an unexpected error occurred",
                            instance=request.url.path,
                            headers={"X-Content-Type-Options": "nosniff"})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(DBAPIError, _on_db)
    app.add_exception_handler(Exception, _on_unexpected)
