"""Token-endpoint errors in the shape RFC 6749 §5.2 asks for, carried in problem+json."""

from __future__ import annotations

from typing import Any

from chassis.errors import BadRequest


class OAuthError(BadRequest):
    """A 400 whose body also holds the OAuth ``error`` code and ``error_description``,
    so OAuth client libraries and problem+json readers both understand it."""

    error_code = "invalid_request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail, error=self.error_code, error_description=detail, **extra)


class InvalidRequest(OAuthError):
    title, error_code = "Invalid token request", "invalid_request"


class InvalidGrant(OAuthError):
    title, error_code = "Invalid grant", "invalid_grant"


class UnsupportedGrantType(OAuthError):
    title, error_code = "Unsupported grant type", "unsupported_grant_type"


class UnauthorizedClient(OAuthError):
    title, error_code = "Unauthorized client", "unauthorized_client"


class InvalidClient(OAuthError):
    """RFC 6749 §5.2: client authentication failed; 401 with a challenge for the scheme
    the client may use (HTTP Basic)."""

    status = 401
    title, error_code = "Invalid client", "invalid_client"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Basic realm="mercato"'})
