"""The authorization endpoint (RFC 6749 §3.1, §4.1 with PKCE): a sign-in page served by
identity itself, so a client (the storefront) never sees the person's password.

``GET /api/identity/authorize`` checks the request and shows the form; ``POST`` of the form
signs in and sends the browser back to the client's registered redirect URI with a code and
the client's ``state``. An unknown client or a redirect URI it did not register is shown as an
error page, never followed (no open redirector); every other error goes back to the client as
``error=`` on its redirect URI. The form carries a CSRF token bound to a cookie and to the
request it was rendered for (see ``CsrfTokens``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import secrets
from importlib.resources import files
from string import Template
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from chassis.errors import PROBLEM_JSON, TooManyRequests
from chassis.openapi import PROBLEM_REF
from chassis.security_headers import html_page_headers
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from identity.entrypoints.api import client_address
from identity.entrypoints.deps import Context, IdentityUow, Services
from identity.service_layer.errors import InvalidGrant
from identity.service_layer.oauth import AuthorizationRequest, NotRedirectable, RedirectError

PREFIX = "/api/identity"
AUTHORIZE_PATH = f"{PREFIX}/authorize"
CSRF_COOKIE = "identity_csrf"
_NONCE = re.compile(r"[A-Za-z0-9_-]{43}")
# Far above anything legitimate; longer values are cut, then refused by the checks.
_MAX_FIELD = 2048
_MAX_USERNAME, _MAX_PASSWORD = 320, 1024

router = APIRouter(prefix=PREFIX, tags=["oauth"])

_TEMPLATES = files("identity.entrypoints") / "templates"
_PAGE = Template((_TEMPLATES / "sign_in.html").read_text(encoding="utf-8"))
_FORM = Template((_TEMPLATES / "sign_in_form.html").read_text(encoding="utf-8"))


class CsrfTokens:
    """Signed double-submit tokens (OWASP): the page sets a random nonce in a cookie only
    this path receives (HttpOnly, SameSite=Strict) and puts HMAC(key, nonce + request) in
    the form. Another site can make a browser post the form but can neither read the cookie
    nor compute the token, and a token fits only the request it was rendered for, so a
    changed ``state`` or redirect URI is refused too. Every identity instance derives the
    same key from the signing-key secret, so any of them can check any form."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_secret(cls, secret: bytes | None) -> CsrfTokens:
        if secret is None:  # development without a secret: one process, its own key
            return cls(secrets.token_bytes(32))
        return cls(hmac.new(secret, b"mercato identity csrf", hashlib.sha256).digest())

    def token(self, nonce: str, request: AuthorizationRequest) -> str:
        message = "\n".join([nonce, request.client_id, request.redirect_uri, request.state,
                             request.code_challenge, request.scope]).encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def valid(self, nonce: str | None, token: str | None, request: AuthorizationRequest) -> bool:
        if not nonce or not token or not _NONCE.fullmatch(nonce) or len(token) > 64:
            return False
        return hmac.compare_digest(self.token(nonce, request), token)


async def get_csrf(ctx: Context) -> CsrfTokens:
    return ctx.wiring.csrf


Csrf = Annotated[CsrfTokens, Depends(get_csrf)]


def _e(value: str) -> str:
    return html.escape(value, quote=True)


def _page(title: str, body: str, status: int, *, form_action: tuple[str, ...] = (),
          headers: dict[str, str] | None = None) -> HTMLResponse:
    page = _PAGE.substitute(title=_e(title), body=body)
    return HTMLResponse(page, status_code=status,
                        headers={**html_page_headers(page, form_action=form_action),
                                 **(headers or {})})


def error_page(message: str, status: int = 400) -> HTMLResponse:
    body = (f'<h1>Sign-in cannot continue</h1>\n<p class="error" role="alert">{_e(message)}</p>'
            "\n<p>Go back to the shop and start signing in again.</p>")
    return _page("Sign-in cannot continue", body, status)


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def form_page(request: AuthorizationRequest, csrf_token: str, *, status: int = 200,
              error: str | None = None, username: str = "",
              headers: dict[str, str] | None = None) -> HTMLResponse:
    error_html = describedby = ""
    if error:
        error_html = f'<p id="sign-in-error" class="error" role="alert">{_e(error)}</p>'
        describedby = ' aria-describedby="sign-in-error" aria-invalid="true"'
    body = _FORM.substitute(
        action=_e(AUTHORIZE_PATH), csrf_token=_e(csrf_token), client_id=_e(request.client_id),
        redirect_uri=_e(request.redirect_uri), state=_e(request.state),
        code_challenge=_e(request.code_challenge), scope=_e(request.scope),
        username=_e(username), error=error_html, describedby=describedby)
    # The browser follows the answer to the POST to the client: form-action must allow it.
    return _page("Sign in", body, status, form_action=(_origin(request.redirect_uri),),
                 headers=headers)


def redirect_to_client(redirect_uri: str, params: dict[str, str], status: int) -> Response:
    """``redirect_uri`` with ``params`` added to whatever query it has (RFC 6749 §3.1.2)."""
    parts = urlsplit(redirect_uri)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *params.items()])
    target = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    return RedirectResponse(target, status_code=status,
                            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def _error_redirect(exc: RedirectError, status: int) -> Response:
    params = {"error": exc.error, "error_description": exc.description}
    if exc.state is not None:
        params["state"] = exc.state
    return redirect_to_client(exc.redirect_uri, params, status)


def _cut(value: str | None) -> str | None:
    return value[:_MAX_FIELD] if value is not None else None


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or \
        request.headers.get("x-forwarded-proto", "").lower() == "https"


_HTML = {"text/html": {"schema": {"type": "string"}}}
_HTML_OR_PROBLEM = {**_HTML, PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}
_REDIRECT = {"Location": {"description": "the client's redirect URI with the answer",
                          "schema": {"type": "string"}}}


def _q(description: str) -> Any:
    return Query(description=description)


@router.get(
    "/authorize", response_class=HTMLResponse,
    responses={200: {"description": "the sign-in page", "content": _HTML},
               302: {"description": "an error for the client, on its redirect URI: error=, "
                                    "error_description= and state= (RFC 6749 §4.1.2.1)",
                     "headers": _REDIRECT},
               400: {"description": "the client is unknown or the redirect URI is not one it "
                                    "registered: an error page, never a redirect",
                     "content": _HTML_OR_PROBLEM}},
    summary="OAuth 2 authorization endpoint: the sign-in page (code flow with PKCE S256)")
async def authorize_page(
    request: Request, uow: IdentityUow, services: Services, csrf: Csrf,
    response_type: Annotated[str | None, _q("must be 'code'")] = None,
    client_id: Annotated[str | None, _q("a registered client")] = None,
    redirect_uri: Annotated[str | None, _q("exactly one the client registered")] = None,
    state: Annotated[str | None, _q("required; returned as it came")] = None,
    code_challenge: Annotated[str | None, _q("BASE64URL(SHA256(code_verifier))")] = None,
    code_challenge_method: Annotated[str | None, _q("must be 'S256'")] = None,
    scope: Annotated[str | None, _q("space-separated scopes")] = None,
) -> Response:
    try:
        checked = await services.authorizations.check(
            uow, response_type=_cut(response_type), client_id=_cut(client_id),
            redirect_uri=_cut(redirect_uri), state=_cut(state),
            code_challenge=_cut(code_challenge),
            code_challenge_method=_cut(code_challenge_method), scope=_cut(scope))
    except NotRedirectable as exc:
        return error_page(str(exc))
    except RedirectError as exc:
        return _error_redirect(exc, 302)
    nonce = request.cookies.get(CSRF_COOKIE) or ""
    if not _NONCE.fullmatch(nonce):
        nonce = secrets.token_urlsafe(32)
    page = form_page(checked, csrf.token(nonce, checked))
    page.set_cookie(CSRF_COOKIE, nonce, path=AUTHORIZE_PATH, httponly=True, samesite="strict",
                    secure=_secure(request), max_age=3600)
    return page


@router.post(
    "/authorize", response_class=HTMLResponse, status_code=303,
    responses={303: {"description": "signed in: the client's redirect URI with code= and "
                                    "state=; or an error for the client there (error=)",
                     "headers": _REDIRECT},
               400: {"description": "unknown client or redirect URI (error page), or the "
                                    "email or password is wrong (the form again)",
                     "content": _HTML_OR_PROBLEM},
               403: {"description": "the form's CSRF token is missing or does not fit its "
                                    "cookie and request", "content": _HTML_OR_PROBLEM},
               429: {"description": "too many failed sign-ins for this account from this "
                                    "client (the form again, with Retry-After)",
                     "content": _HTML_OR_PROBLEM}},
    summary="Sign in on the authorization endpoint's form, then back to the client")
async def authorize_sign_in(
    request: Request, uow: IdentityUow, services: Services, csrf: Csrf,
    csrf_token: Annotated[str | None, Form()] = None,
    response_type: Annotated[str | None, Form()] = None,
    client_id: Annotated[str | None, Form()] = None,
    redirect_uri: Annotated[str | None, Form()] = None,
    state: Annotated[str | None, Form()] = None,
    code_challenge: Annotated[str | None, Form()] = None,
    code_challenge_method: Annotated[str | None, Form()] = None,
    scope: Annotated[str | None, Form()] = None,
    username: Annotated[str | None, Form(description="the account's email")] = None,
    password: Annotated[str | None, Form()] = None,
) -> Response:
    try:
        checked = await services.authorizations.check(
            uow, response_type=_cut(response_type), client_id=_cut(client_id),
            redirect_uri=_cut(redirect_uri), state=_cut(state),
            code_challenge=_cut(code_challenge),
            code_challenge_method=_cut(code_challenge_method), scope=_cut(scope))
    except NotRedirectable as exc:
        return error_page(str(exc))
    except RedirectError as exc:
        return _error_redirect(exc, 303)
    if not csrf.valid(request.cookies.get(CSRF_COOKIE), csrf_token, checked):
        return error_page("This form has expired or did not come from this page, so it was "
                          "not accepted.", 403)
    assert csrf_token is not None  # valid() said so
    username = (username or "")[:_MAX_USERNAME + 1]
    if not username or not password:
        return form_page(checked, csrf_token, status=400, username=username,
                         error="Enter your email and password.")
    if len(username) > _MAX_USERNAME or len(password) > _MAX_PASSWORD:
        return form_page(checked, csrf_token, status=400, error="The email or password is "
                                                                "too long.")
    try:
        code = await services.authorizations.sign_in(
            uow, checked, username=username, password=password,
            client_address=client_address(request))
    except InvalidGrant:
        return form_page(checked, csrf_token, status=400, username=username,
                         error="The email or password is wrong.")
    except TooManyRequests as exc:
        return form_page(checked, csrf_token, status=429, username=username,
                         headers=exc.headers,
                         error=f"Too many failed sign-ins. Try again in "
                               f"{exc.extra.get('retry_after', 1)} seconds.")
    return redirect_to_client(checked.redirect_uri, {"code": code, "state": checked.state},
                              303)
