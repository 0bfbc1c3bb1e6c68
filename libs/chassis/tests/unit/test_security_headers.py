"""Headers for a service's own server-rendered pages (identity's sign-in page)."""

from __future__ import annotations

import base64
import hashlib

from chassis.security_headers import html_page_headers

STYLE = "body{margin:0}"


def _directives(policy: str) -> dict[str, str]:
    return dict(d.strip().split(" ", 1) for d in policy.split(";"))


def test_a_page_runs_no_script_and_only_its_own_inline_style() -> None:
    headers = html_page_headers(f"<html><style>{STYLE}</style><form></form></html>",
                                form_action=["http://localhost:8080"])
    csp = _directives(headers["Content-Security-Policy"])
    digest = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
    assert csp["default-src"] == "'none'" and csp["script-src"] == "'none'"
    assert csp["style-src"] == f"'sha256-{digest}'"
    assert csp["frame-ancestors"] == "'none'" and csp["base-uri"] == "'none'"
    # The redirect after a form post must be allowed too (browsers apply form-action to it).
    assert csp["form-action"] == "'self' http://localhost:8080"
    assert (headers["X-Frame-Options"], headers["Referrer-Policy"], headers["Cache-Control"]) \
        == ("DENY", "no-referrer", "no-store")


def test_a_page_without_forms_may_post_nowhere() -> None:
    csp = _directives(html_page_headers("<p>error</p>")["Content-Security-Policy"])
    assert csp["form-action"] == "'none'" and csp["style-src"] == "'none'"
