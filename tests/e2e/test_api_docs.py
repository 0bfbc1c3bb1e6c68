"""Every service's API docs through the edge, as a person opens them: public (no sign-in), and
Swagger UI renders the OpenAPI 3.1 document in a real browser (Debian's chromium, driven by
Playwright) under the page's Content-Security-Policy, offline.

`make test` installs chromium where it can (root with apt-get, as CI is); elsewhere the
browser test is skipped, except under CI where a missing browser is a failure.
"""

from __future__ import annotations

from typing import Any

import pytest
from edge_helpers import Platform, wait_until

pytestmark = pytest.mark.e2e

DOCS = ("/api/identity", "/api/catalog", "/api/inventory", "/api/cart", "/api/orders",
        "/api/payments", "/api/shipping", "/api/notifications", "/api/history")


def test_every_docs_page_and_document_is_public_at_the_edge(platform: Platform) -> None:
    with platform.client() as c:  # no token
        for root in DOCS:
            # The service may still be starting (503: no healthy instance yet).
            page = wait_until(lambda r=root: (p := c.get(f"{r}/docs")).status_code != 503 and p,
                              60, f"{root}/docs through the edge")
            assert page.status_code == 200, (root, page.text)
            assert "content-security-policy" in page.headers
            assert c.get(f"{root}/docs/static/swagger-ui-bundle.js").status_code == 200, root
            document = c.get(f"{root}/openapi.json")
            assert document.status_code == 200, (root, document.text)
            assert document.json()["openapi"].startswith("3.1")
            # Public to read only: a write there still needs a token.
            assert c.post(f"{root}/openapi.json").status_code == 401, root


@pytest.fixture(scope="module")
def browser(chromium: Any) -> Any:
    return chromium


@pytest.mark.parametrize("root", DOCS)
def test_swagger_ui_renders_every_operation_under_its_csp(platform: Platform, browser: Any,
                                                          root: str) -> None:
    with platform.client() as c:
        document = wait_until(lambda: (d := c.get(f"{root}/openapi.json")).status_code == 200
                              and d, 60, f"{root}/openapi.json through the edge")
        operations = sum(len(item) for item in document.json()["paths"].values())
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    # Offline: nothing may leave for another origin (a CDN, fonts, a validator badge).
    page.route("**/*", lambda route: route.continue_()
               if route.request.url.startswith(platform.base_url) else route.abort())
    try:
        page.goto(f"{platform.base_url}{root}/docs")
        page.wait_for_selector(".opblock", timeout=20_000)
        assert page.locator(".opblock").count() == operations
        assert "Unable to render this definition" not in page.content()
        assert page.locator(".errors-wrapper").count() == 0
        assert page.locator(".version-stamp").inner_text().startswith("OAS 3.1")
    finally:
        page.close()
    assert problems == [], problems
