"""Helpers for driving identity's authorization code flow (with PKCE) in tests: the sign-in
page is parsed as a browser would, its form posted back with the cookie it set."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

from httpx2 import Response

API = "/api/identity"
REDIRECT = "http://localhost:8080/auth/callback"
CLIENT_SECRET = "s" * 8 + secrets.token_urlsafe(32)


def pkce() -> tuple[str, str]:
    """A fresh (code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()) \
        .rstrip(b"=").decode()
    return verifier, challenge


def authorize_params(challenge: str, *, client_id: str = "storefront",
                     redirect_uri: str = REDIRECT, state: str | None = "st-123",
                     method: str | None = "S256", **extra: str) -> dict[str, str]:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
              "code_challenge": challenge, "code_challenge_method": method, "state": state,
              **extra}
    return {k: v for k, v in params.items() if v is not None}


@dataclass
class Page(HTMLParser):
    """What a test needs of an HTML page: its forms' fields, labels and alerts."""

    fields: dict[str, str] = field(default_factory=dict)
    inputs: list[dict[str, str]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)
    html_lang: str | None = None
    title: str = ""
    buttons: list[str] = field(default_factory=list)
    _in: str | None = None
    _for: str | None = None

    def __post_init__(self) -> None:
        super().__init__()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.html_lang = a.get("lang")
        if tag == "input":
            self.inputs.append(a)
            self.fields[a.get("name", "")] = a.get("value", "")
        if tag == "label":
            self._for = a.get("for")
        if a.get("role") == "alert":
            self._in = "alert"
            self.alerts.append("")
        if tag in ("title", "button"):
            self._in = tag
            if tag == "button":
                self.buttons.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._for = None
        if tag in ("title", "button", "p"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._for:
            self.labels[self._for] = self.labels.get(self._for, "") + data.strip()
        if self._in == "alert":
            self.alerts[-1] += data
        elif self._in == "title":
            self.title += data
        elif self._in == "button":
            self.buttons[-1] += data.strip()


def parse(resp: Response) -> Page:
    page = Page()
    page.feed(resp.text)
    return page


def answer(resp: Response) -> dict[str, str]:
    """The query the client got back on its redirect URI."""
    location = resp.headers["location"]
    assert location.startswith(REDIRECT.split("?")[0]) or "://" in location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def form_of(page: Page, **credentials: str) -> dict[str, str]:
    return {**{k: v for k, v in page.fields.items() if k not in ("username", "password")},
            **credentials}


def token_form(code: str, verifier: str, *, redirect_uri: str = REDIRECT,
               **extra: Any) -> dict[str, Any]:
    return {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": verifier, **extra}
