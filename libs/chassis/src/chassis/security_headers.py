"""Security headers on every answer a service gives, whoever calls it (the edge or not).

* ``X-Content-Type-Options: nosniff`` on every response: a browser must take a JSON body
  (which may echo user input) as JSON, never sniff it into HTML or script.
* ``Cache-Control: no-store`` on routes that answer with one person's data: a shared cache
  or the browser's disk must not keep it. A router or route declares it with the
  ``PERSONAL_DATA`` dependency, so the chassis holds no list of paths.
* A Content-Security-Policy and frame protection on the API docs page; a service serving
  HTML of its own (identity's sign-in page) sets ``html_page_headers`` on those answers:
  nothing may frame it (clickjacking) and it runs and styles only what it ships inline.

A pure ASGI middleware (not BaseHTTPMiddleware): one header append per response.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NO_STORE_KEY = "mercato.no_store"
NOSNIFF = (b"x-content-type-options", b"nosniff")
NO_STORE = (b"cache-control", b"no-store")


async def personal_data(request: Request) -> None:
    # The scope is the one the middleware holds: routing updates it in place.
    request.scope[NO_STORE_KEY] = True


# ``APIRouter(dependencies=[PERSONAL_DATA])`` or ``@router.get(..., dependencies=[...])``.
PERSONAL_DATA = Depends(personal_data)


def _inline_hashes(html: str, tag: str) -> str:
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()}'"
        for block in re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL))


def html_page_headers(html: str, *, form_action: Iterable[str] = ()) -> dict[str, str]:
    """Headers for a server-rendered page that loads nothing from anywhere: its inline
    ``<style>`` and ``<script>`` blocks run by hash, nothing else. ``form_action`` lists the
    origins its forms may post to, or be redirected to after posting (browsers apply
    form-action to the redirect too): besides 'self', e.g. an OAuth client's redirect URI."""
    scripts = _inline_hashes(html, "script")
    styles = _inline_hashes(html, "style")
    none = "'none'"
    targets = " ".join(["'self'", *form_action]) if form_action else none
    policy = (f"default-src {none}; "
              f"script-src {scripts or none}; "
              f"style-src {styles or none}; "
              "img-src 'self' data:; "
              f"base-uri 'none'; form-action {targets}; frame-ancestors 'none'")
    # The page may carry personal data (a name, an email typed in) and its URL OAuth state:
    # not cached, not sent on as a Referer.
    return {"Content-Security-Policy": policy, "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def docs_policy(html: str) -> str:
    """The CSP for a docs page: its own origin's scripts plus the hash of each inline one
    (Swagger UI's start-up call), so no other inline script can run."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL))
    return ("default-src 'none'; "
            f"script-src 'self' {hashes}; "
            # Swagger UI's React components set style attributes.
            "style-src 'self' 'unsafe-inline'; "
            # swagger-ui.css draws its icons as data: URIs.
            "img-src 'self' data:; "
            "connect-src 'self'; "
            "font-src 'self'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, docs_path: str, docs_policy: str) -> None:
        self.app = app
        self.docs_path = docs_path
        self.docs_headers = [(b"content-security-policy", docs_policy.encode()),
                             (b"x-frame-options", b"DENY"),
                             (b"referrer-policy", b"no-referrer")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), NOSNIFF]
                if scope.get(NO_STORE_KEY):
                    # Whatever the route said about caching, personal data is not cached.
                    headers = [h for h in headers if h[0].lower() != b"cache-control"]
                    headers.append(NO_STORE)
                if scope["path"] == self.docs_path:
                    headers.extend(self.docs_headers)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)
