"""The simulated provider's HTTP protocol (aiohttp): a card vault and charges on its tokens.

- `POST /payment-methods` `{card_number, idempotency_key?}`: 201 a new payment method
  `{id, last4, brand, created_at}`; 200 the one made before under that key for the same card;
  409 `idempotency_key_reused` (that key was used for another card); 400 `invalid_card`
  (not 12-19 ASCII digits with a valid Luhn check digit). The vault keeps the number; no
  answer ever carries it again.
- `POST /charges` `{idempotency_key, amount, currency, payment_method}`: 201 a new charge on
  the vaulted card, 200 the charge already made for that key (never a second one); 404
  `no_such_payment_method`; 400 a malformed request.
- `POST /charges/{id}/capture` (authorized → captured), `/void` (authorized → voided),
  `/refund` (captured → refunded): 200 with the charge, also when already done; 409 from any
  other state; 404 an unknown charge.
- `GET /charges?idempotency_key=K`: `{"items": [charge]}`, empty if none; without K, all.
- `GET /charges/{id}`: the charge or 404. `GET /health`: `{"status": "ok"}`.

With an ``api_token`` (``mercato up`` always gives one) every call but `GET /health` needs
`Authorization: Bearer <token>` (401 otherwise): the simulator moves money, and it listens
where every local process can reach it.

A charge is `{id, idempotency_key, status, decline_reason, amount, currency, card_last4,
payment_method, attempts, created_at, updated_at}`; `attempts` counts the POST /charges calls
for its key (a test can see a client that charged twice).

Test cards (their behaviour follows the vaulted number): 4242424242424242 approves;
4000000000000002 declines (`card_declined`); 4000000000009995 declines (`insufficient_funds`);
4000000000000119 is recorded at once as declined (`provider_timeout`) but answered only after
`timeout_card_delay_ms`, longer than any sane client timeout — the client must find the
outcome by querying its key. Any other valid number approves. Every request waits
`latency_ms`; a share `failure_rate` of requests answers 503 before doing anything.

Nothing here logs a request body, and the access log is off: a card number sent to the vault
stays in the vault's file.
"""

from __future__ import annotations

import asyncio
import hmac
import random
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from aiohttp import web
from stdnum import luhn

from simulators.payment_provider.store import ChargeStore

APPROVE, DECLINE, INSUFFICIENT, TIMEOUT = (
    "4242424242424242", "4000000000000002", "4000000000009995", "4000000000000119")
DECLINES = {DECLINE: "card_declined", INSUFFICIENT: "insufficient_funds",
            TIMEOUT: "provider_timeout"}

# What each operation moves from and to.
TRANSITIONS = {"capture": ("authorized", "captured"), "void": ("authorized", "voided"),
               "refund": ("captured", "refunded")}

STORE: web.AppKey[ChargeStore] = web.AppKey("store", ChargeStore)


@dataclass(frozen=True)
class ProviderConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8790
    latency_ms: int = 0
    failure_rate: float = 0.0
    timeout_card_delay_ms: int = 30_000
    api_token: str | None = None


CONFIG: web.AppKey[ProviderConfig] = web.AppKey("config", ProviderConfig)


def _error(status: int, code: str, **extra: Any) -> web.Response:
    return web.json_response({"error": code, **extra}, status=status)


def require_token(token: str | None) -> Any:
    """401 for every call but /health without ``Bearer <token>`` (none: open to all). Written
    here rather than taken from the chassis: the simulator plays a third party."""
    expected = f"Bearer {token}".encode() if token else None

    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        if expected is not None and request.path != "/health" and not hmac.compare_digest(
                request.headers.get("Authorization", "").encode(), expected):
            return web.json_response({"error": "unauthorized"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return auth


@web.middleware
async def chaos(request: web.Request, handler: Any) -> web.StreamResponse:
    config = request.app[CONFIG]
    if request.path != "/health":
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        if config.failure_rate and random.random() < config.failure_rate:  # noqa: S311
            return _error(503, "temporarily_unavailable")
    return await handler(request)


def _valid_card(card: Any) -> bool:
    # ASCII digits only: str.isdigit() also says yes to full-width and other scripts' digits.
    return (isinstance(card, str) and 12 <= len(card) <= 19 and card.isascii()
            and card.isdigit() and luhn.is_valid(card))


def brand_of(card: str) -> str:
    """The card network from the number's first digits (enough for the test cards)."""
    if card.startswith("4"):
        return "visa"
    if card[:2] in ("34", "37"):
        return "amex"
    if "51" <= card[:2] <= "55" or "2221" <= card[:4] <= "2720":
        return "mastercard"
    return "unknown"


async def create_payment_method(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "invalid_json")
    if not isinstance(body, dict) or not _valid_card(body.get("card_number")):
        return _error(400, "invalid_card",
                      detail="card_number must be 12-19 digits (0-9) with a valid check digit")
    key = body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 200):
        return _error(400, "invalid_request", detail="idempotency_key must be 1-200 chars")
    card = body["card_number"]
    made = request.app[STORE].vault(card, brand=brand_of(card), idempotency_key=key)
    if made is None:
        return _error(409, "idempotency_key_reused")
    method, created = made
    return web.json_response(method, status=201 if created else 200)


def _valid_charge_request(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "body must be an object"
    for name in ("idempotency_key", "amount", "currency", "payment_method"):
        if not isinstance(body.get(name), str) or not body[name]:
            return f"{name} is required"
    try:
        if Decimal(body["amount"]) <= 0:
            return "amount must be positive"
    except InvalidOperation:
        return "amount must be a decimal"
    return None


async def create_charge(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "invalid_json")
    problem = _valid_charge_request(body)
    if problem:
        return _error(400, "invalid_request", detail=problem)
    store = request.app[STORE]
    card = store.card_of(body["payment_method"])
    if card is None:
        return _error(404, "no_such_payment_method")
    reason = DECLINES.get(card)
    charge, created = store.create_or_count(
        body["idempotency_key"], status="declined" if reason else "authorized",
        decline_reason=reason, amount=body["amount"], currency=body["currency"],
        card_last4=card[-4:], payment_method=body["payment_method"])
    if card == TIMEOUT:
        # Recorded (and committed) already; only the answer is late.
        await asyncio.sleep(request.app[CONFIG].timeout_card_delay_ms / 1000)
    return web.json_response(charge, status=201 if created else 200)


async def list_charges(request: web.Request) -> web.Response:
    store = request.app[STORE]
    key = request.query.get("idempotency_key")
    if key is None:
        return web.json_response({"items": store.all()})
    found = store.by_key(key)
    return web.json_response({"items": [found] if found else []})


async def get_charge(request: web.Request) -> web.Response:
    found = request.app[STORE].get(request.match_info["charge_id"])
    return web.json_response(found) if found else _error(404, "no_such_charge")


async def change_charge(request: web.Request) -> web.Response:
    operation = request.match_info["operation"]
    if operation not in TRANSITIONS:
        return _error(404, "no_such_operation")
    store = request.app[STORE]
    charge = store.get(request.match_info["charge_id"])
    if charge is None:
        return _error(404, "no_such_charge")
    source, target = TRANSITIONS[operation]
    if charge["status"] == source:
        store.set_status(charge["id"], target)
        return web.json_response(store.get(charge["id"]))
    if charge["status"] == target:  # done before: the same answer again
        return web.json_response(charge)
    return _error(409, "invalid_state", charge_status=charge["status"])


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(config: ProviderConfig) -> web.Application:
    app = web.Application(middlewares=[require_token(config.api_token), chaos],
                          client_max_size=16 * 1024)
    app[CONFIG] = config
    store = ChargeStore(config.data_dir)
    app[STORE] = store

    async def close_store(_: web.Application) -> None:
        store.close()

    app.on_cleanup.append(close_store)
    app.router.add_post("/payment-methods", create_payment_method)
    app.router.add_post("/charges", create_charge)
    app.router.add_get("/charges", list_charges)
    app.router.add_get("/charges/{charge_id}", get_charge)
    app.router.add_post("/charges/{charge_id}/{operation}", change_charge)
    app.router.add_get("/health", health)
    return app
