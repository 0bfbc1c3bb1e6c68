"""A bearer token on the local stand-ins for third parties (the mail sink, the payment
provider simulator): their APIs answer only callers that hold the home's token.

They listen on loopback, where every process of every user of the machine can reach them;
without a token anyone could read the mails (reset links, order details) or move simulated
money. The runtime makes one token per simulator and home (``secrets/``) and gives it to the
simulator and to the service that calls it. ``/health`` stays open: it tells nothing, and
readiness checks must not need a secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = frozenset({"/health"})


def bearer_header(token: str | None) -> dict[str, str]:
    """The header a caller sends; none without a token."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def require_token(token: str | None) -> Callable[[web.Request, Handler],
                                                 Awaitable[web.StreamResponse]]:
    """aiohttp middleware: 401 for any call but ``/health`` without ``Bearer <token>``.

    ``token=None`` leaves the door open (a simulator started by hand, outside the runtime).
    """
    expected = f"Bearer {token}".encode() if token else None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is not None and request.path not in OPEN_PATHS:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return web.json_response(
                    {"error": "unauthorized",
                     "detail": "a bearer token is required (the home's simulator token)"},
                    status=401, headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return middleware
