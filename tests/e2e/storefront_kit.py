"""A person at the storefront, for the e2e tests: a cookie-keeping client of the edge that
fills in the shop's forms (CSRF token included) the way a browser would."""

from __future__ import annotations

import re
import uuid
from html import unescape
from typing import Any

import httpx2 as httpx
from edge_helpers import Platform, new_client_address

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
CHECKOUT_KEY = re.compile(r'name="checkout_key" value="([0-9a-f]{32})"')
HIDDEN = re.compile(r'<input type="hidden" name="(?P<name>[^"]+)" value="(?P<value>[^"]*)">')
STATUS = re.compile(r'data-status="([A-Z]+)"')
ADDRESS = {"address_id": "new", "name": "Kim Min-ji", "line1": "12 Sejong-daero",
           "city": "Seoul", "postal_code": "04524", "country": "KR"}


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


class Shopper:
    def __init__(self, platform: Platform) -> None:
        self.address = new_client_address()
        self.base_url = platform.base_url.rstrip("/")
        self.http = httpx.Client(base_url=platform.base_url, timeout=20,
                                 transport=httpx.HTTPTransport(local_address=self.address))
        self.email = f"shopper-{uuid.uuid4().hex[:10]}@example.com"
        self.password = "correct horse battery"

    def __enter__(self) -> Shopper:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.http.close()

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def submit(self, page: str, action: str, fields: dict[str, str]) -> httpx.Response:
        """Post a form of ``page`` (fetched first, for its CSRF token) to ``action``."""
        html = self.get(page).text
        return self.http.post(action, data={"csrf": csrf_of(html), **fields})

    def at_identity(self, answer: httpx.Response, email: str,
                    password: str) -> httpx.Response:
        """Follow the storefront's redirect to identity's sign-in page and sign in there,
        as a browser does; identity's answer (a 303 to the storefront's callback when the
        password is right)."""
        assert answer.status_code in (302, 303), answer.text
        target = answer.headers["location"]
        assert target.startswith("/api/identity/authorize?"), target
        page = self.get(target)
        assert page.status_code == 200, page.text
        fields = {m["name"]: unescape(m["value"]) for m in HIDDEN.finditer(page.text)}
        return self.http.post("/api/identity/authorize",
                              data={**fields, "username": email, "password": password})

    def callback(self, answer: httpx.Response, email: str, password: str) -> str:
        """The callback URL identity sends the browser back to, not yet followed."""
        back = self.at_identity(answer, email, password)
        assert back.status_code == 303, back.text
        location = back.headers["location"]
        assert location.startswith(f"{self.base_url}/auth/callback?"), location
        return location

    def sign_up(self) -> None:
        answer = self.submit("/signup", "/signup", {"name": "Kim Min-ji", "email": self.email,
                                                    "password": self.password})
        done = self.get(self.callback(answer, self.email, self.password))
        assert done.status_code == 303 and done.headers["location"] == "/", done.text
        assert "Sign out" in self.get("/").text

    def sign_in(self, email: str, password: str, next_url: str = "/") -> None:
        answer = self.get("/signin", params={"next": next_url})
        done = self.get(self.callback(answer, email, password))
        assert done.status_code == 303 and done.headers["location"] == next_url, done.text

    def add(self, product_id: str, quantity: int = 1) -> None:
        answer = self.submit(f"/products/{product_id}", "/cart/items",
                             {"product_id": product_id, "quantity": str(quantity)})
        assert answer.status_code == 303 and answer.headers["location"].startswith("/cart"), \
            answer.text

    def checkout_form(self, card: str) -> dict[str, str]:
        page = self.get("/checkout")
        assert page.status_code == 200, page.text
        key = CHECKOUT_KEY.search(page.text)
        assert key
        return {"csrf": csrf_of(page.text), "checkout_key": key.group(1), **ADDRESS,
                "card_number": card}

    def status_of(self, order_path: str) -> str:
        found = STATUS.search(self.get(f"{order_path}/status").text)
        assert found
        return found.group(1)
