"""The services `mercato up` runs, and how instance names and environments are formed."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mercato.runtime.paths import Home

SERVICES = ["identity", "catalog", "inventory", "payments", "shipping", "orders", "cart",
            "notifications", "order_history", "storefront"]


@dataclass(frozen=True)
class Simulator:
    """A stand-in for a third party (the payment provider, the mail server), run beside the
    services. Its ports are chosen once per run: the services that call it are told them at
    their start, so a restarted simulator must come back on the same ones. The first port
    answers ``health_path`` over HTTP. ``token_env`` names the variable that carries the
    home's bearer token for its API, to the simulator and to the services that call it."""

    name: str
    module: str
    health_path: str
    ports: tuple[str, ...]
    env: Callable[[dict[str, int], Path], dict[str, str]]  # (ports, data dir) -> its env
    used_by: dict[str, Callable[[dict[str, int]], dict[str, str]]]  # service -> env for it
    token_env: str


SIMULATORS = [
    Simulator(
        name="payments-provider", module="simulators.payment_provider", health_path="/health",
        ports=("http",),
        env=lambda p, data: {"PAYMENTS_PROVIDER_HOST": "127.0.0.1",
                             "PAYMENTS_PROVIDER_PORT": str(p["http"]),
                             "PAYMENTS_PROVIDER_DATA_DIR": str(data)},
        used_by={"payments": lambda p: {
            "PAYMENTS_PROVIDER_URL": f"http://127.0.0.1:{p['http']}"},
            # The legacy shop charges through the same provider (the supervisor hands it
            # the URL and token under its own LEGACY_PROVIDER_* names).
            "legacy": lambda p: {}},
        token_env="PAYMENTS_PROVIDER_API_TOKEN",  # noqa: S106 - a variable name
    ),
    Simulator(
        name="mailsink", module="simulators.mail_sink", health_path="/health",
        ports=("http", "smtp"),
        env=lambda p, data: {"NOTIFICATIONS_SINK_HOST": "127.0.0.1",
                             "NOTIFICATIONS_SINK_HTTP_PORT": str(p["http"]),
                             "NOTIFICATIONS_SINK_SMTP_PORT": str(p["smtp"]),
                             "NOTIFICATIONS_SINK_DATA_DIR": str(data)},
        used_by={"notifications": lambda p: {
            "NOTIFICATIONS_SMTP_HOST": "127.0.0.1",
            "NOTIFICATIONS_SMTP_PORT": str(p["smtp"]),
            "NOTIFICATIONS_SINK_HTTP_URL": f"http://127.0.0.1:{p['http']}"}},
        token_env="NOTIFICATIONS_SINK_API_TOKEN",  # noqa: S106 - a variable name
    ),
]


# Processes `mercato up --with NAME` adds beside the services. ``legacy`` is the monolith
# the migration starts from: its own database (made and migrated like a service's), the
# payment provider simulator, no broker and no registry (it never had either); reached on
# its own port, ``urls.legacy`` in run/state.json.
OPTIONAL = {"legacy": "legacy"}


def parse_with(items: list[str] | None) -> list[str]:
    """``--with legacy`` -> ``["legacy"]``; raises ValueError on an unknown name."""
    chosen: list[str] = []
    for item in items or []:
        name = item.strip()
        if name not in OPTIONAL:
            raise ValueError(f"--with {item}: unknown; choose from " + ", ".join(OPTIONAL))
        if name not in chosen:
            chosen.append(name)
    return chosen


def legacy_env(*, port: int, database_url: str, host: str = "127.0.0.1") -> dict[str, str]:
    return {"LEGACY_INSTANCE_ID": "legacy", "LEGACY_HOST": host, "LEGACY_PORT": str(port),
            "LEGACY_DATABASE_URL": database_url}


_SCALE = re.compile(r"^([a-z][a-z0-9_]*)=(\d+)$")

# Where a service's public API lives under the edge, when it is not /api/<service>.
API_PATHS = {"order_history": "/api/history"}


def api_path(service: str) -> str:
    return API_PATHS.get(service, f"/api/{service}")


def parse_scale(items: list[str] | None, services: list[str]) -> dict[str, int]:
    """``["catalog=2"]`` -> ``{"identity": 1, "catalog": 2}``; raises ValueError on bad input."""
    scale = dict.fromkeys(services, 1)
    for item in items or []:
        m = _SCALE.match(item.strip())
        if not m:
            raise ValueError(f"--scale expects SERVICE=N (like catalog=2), got {item!r}")
        name, count = m.group(1), int(m.group(2))
        if name not in scale:
            raise ValueError(f"--scale {item}: unknown service {name!r}; services are "
                             + ", ".join(services))
        if not 1 <= count <= 16:
            raise ValueError(f"--scale {item}: N must be between 1 and 16")
        scale[name] = count
    return scale


def instance_ids(service: str, count: int) -> list[str]:
    return [f"{service}-{i}" for i in range(1, count + 1)]


def service_env(service: str, *, instance_id: str, port: int, database_url: str,
                nats_url: str, host: str = "127.0.0.1") -> dict[str, str]:
    p = service.upper() + "_"
    return {
        f"{p}INSTANCE_ID": instance_id,
        f"{p}HOST": host,
        f"{p}PORT": str(port),
        f"{p}DATABASE_URL": database_url,
        f"{p}NATS_URL": nats_url,
        f"{p}ENVIRONMENT": "development",
    }


# Secrets a service needs besides its database password: environment variable -> the file
# under the home's secrets/ that keeps it, made at the first `mercato up` and reused after.
SERVICE_SECRETS: dict[str, dict[str, str]] = {
    "identity": {"IDENTITY_SIGNING_KEY_SECRET": "identity-signing-key"},
    # Keys the hash of a card in an order's idempotency fingerprint (every instance the same).
    "orders": {"ORDERS_CARD_FINGERPRINT_SECRET": "orders-card-fingerprint"},
    # The storefront: the key of its forms' CSRF tokens (every instance the same, kept across
    # restarts so an open form still posts), and its OAuth 2 client secret at identity
    # (registered by `mercato up`).
    "storefront": {"STOREFRONT_SESSION_SECRET": "storefront-session",
                   "STOREFRONT_OAUTH_CLIENT_SECRET": "storefront-oauth-client"},
}

# The storefront signs people in through identity's authorization endpoint as this
# confidential client; `mercato up` registers it with these redirect URIs on the edge.
STOREFRONT_CLIENT_ID = "storefront"
STOREFRONT_CALLBACK_PATH = "/auth/callback"


def storefront_redirect_uris(edge_port: int) -> list[str]:
    # Both spellings of the machine: a browser opened at either must be sent back to it
    # (the cookie the storefront set before the redirect lives on that host name).
    return [f"http://{host}:{edge_port}{STOREFRONT_CALLBACK_PATH}"
            for host in ("localhost", "127.0.0.1")]


def register_storefront_client_argv(python: str, edge_port: int) -> list[str]:
    """``python -m identity register-client`` for the storefront; its secret goes on stdin
    (``service_secrets(home, "storefront")``), never in argv."""
    argv = [python, "-m", "identity", "register-client", STOREFRONT_CLIENT_ID,
            "--secret-stdin"]
    for uri in storefront_redirect_uris(edge_port):
        argv += ["--redirect-uri", uri]
    return argv


def service_secrets(home: Home, service: str) -> dict[str, str]:
    """The service's secret environment, each secret made once per home and kept: identity's
    signing keys stay readable across restarts only with the same secret, and an order
    retried after a restart is recognised only with the same fingerprint key."""
    env: dict[str, str] = {}
    for variable, name in SERVICE_SECRETS.get(service, {}).items():
        stored = home.read_secret(name)
        if stored is None or not stored.get("secret"):
            stored = {"secret": secrets.token_urlsafe(32)}
            home.write_secret(name, stored)
        env[variable] = str(stored["secret"])
    return env


def simulator_token(home: Home, simulator: str) -> str:
    """The bearer token of one simulator's API, made once per home (``<name>-api-token``)."""
    stored = home.read_secret(f"{simulator}-api-token")
    if stored is None or not stored.get("token"):
        stored = {"token": secrets.token_urlsafe(32)}
        home.write_secret(f"{simulator}-api-token", stored)
    return str(stored["token"])


def repo_root() -> Path:
    """The workspace checkout (services run with it as cwd), found from this installed file."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        pyproject = parent / "pyproject.toml"
        if pyproject.is_file() and "[tool.uv.workspace]" in pyproject.read_text():
            return parent
    return Path.cwd()
