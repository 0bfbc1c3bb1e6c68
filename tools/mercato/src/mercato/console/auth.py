"""Who may use the console: the holder of the home's console token (the URL `mercato up`
prints), then a session cookie. Exporters send the ingest token instead.

The cookie and the CSRF token are HMACs of the console token, so they survive a console
restart and die with the token. Every POST from a browser needs the CSRF token (a form field
or ``X-CSRF-Token``); requests with the bearer token carry no ambient authority and need none.
"""

from __future__ import annotations

import hashlib
import hmac

COOKIE = "mercato_console"


def _mac(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


class Auth:
    def __init__(self, console_token: str, ingest_token: str) -> None:
        self.console_token = console_token
        self.ingest_token = ingest_token
        self.session = _mac(console_token, "session")
        self.csrf = _mac(console_token, "csrf")

    @staticmethod
    def _same(a: str | None, b: str) -> bool:
        return a is not None and hmac.compare_digest(a.encode(), b.encode())

    def login_ok(self, token: str | None) -> bool:
        return self._same(token, self.console_token)

    def bearer(self, header: str | None) -> str | None:
        if header and header[:7].lower() == "bearer ":
            return header[7:].strip()
        return None

    def session_ok(self, cookie: str | None) -> bool:
        return self._same(cookie, self.session)

    def csrf_ok(self, value: str | None) -> bool:
        return self._same(value, self.csrf)

    def ingest_ok(self, header: str | None) -> bool:
        return self._same(self.bearer(header), self.ingest_token)

    def api_bearer_ok(self, header: str | None) -> bool:
        return self._same(self.bearer(header), self.console_token)
