"""The compose file: the whole platform on one Docker host, from the same units.

The official PostgreSQL, NATS and Envoy images (the versions the laptop runs from wheels),
one container per service from ``deploy/Dockerfile``, the simulators, and the edge with the
same routes (``mercato.deploy.edge`` with compose's service names). Passwords come from the
environment (an ``.env`` file beside the compose file, never committed); compose refuses to
start without them.
"""

from __future__ import annotations

from typing import Any

from mercato.deploy.units import HTTP_PORT, PSP, SMTP, Unit, units

POSTGRES_IMAGE = "postgres:18.6-bookworm"
NATS_IMAGE = "nats:2.15.1-alpine"
ENVOY_IMAGE = "envoyproxy/envoy:v1.40.0"
IMAGE = "mercato/{name}:${{MERCATO_TAG:-dev}}"
# The container's own /tmp: a small tmpfs, since the root filesystem is read-only.
TMP = "/tmp:size=64m"  # noqa: S108


def _secret(var: str) -> str:
    return f"${{{var}:?set {var} in deploy/compose/.env (see docs/deploy.md)}}"


def _build(service: str) -> dict[str, Any]:
    return {"context": "../..", "dockerfile": "deploy/Dockerfile", "args": {"SERVICE": service}}


# The stand-ins for third parties: one image of their own (simulators/), not a service's.
SIMULATORS_BUILD = {"context": "../..", "dockerfile": "deploy/Dockerfile",
                    "args": {"SERVICE": "simulators", "PACKAGE_DIR": "simulators"}}


def _python_health(url: str) -> dict[str, Any]:
    return {"test": ["CMD", "python", "-c",
                     f"import urllib.request; urllib.request.urlopen('{url}', timeout=2)"],
            "interval": "10s", "timeout": "3s", "retries": 3, "start_period": "30s"}


# What every service container shares: the image's own user, a read-only root with a small
# /tmp, no capabilities, and the engines up first.
COMMON: dict[str, Any] = {
    "read_only": True,
    "user": "10001:10001",
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges:true"],
    "tmpfs": [TMP],
    "restart": "unless-stopped",
    "depends_on": {"postgres": {"condition": "service_healthy"},
                   "nats": {"condition": "service_started"}},
}


def service(unit: Unit) -> dict[str, Any]:
    p = unit.prefix
    environment = {
        f"{p}ENVIRONMENT": "production",
        f"{p}HOST": "0.0.0.0",
        f"{p}PORT": str(HTTP_PORT),
        f"{p}REGISTER_INSTANCE": "false",
        f"{p}DATABASE_URL": f"postgresql+asyncpg://{unit.service}:"
                            + _secret(f"{p}DATABASE_PASSWORD") + f"@postgres:5432/{unit.service}",
        f"{p}NATS_URL": "nats://nats:4222",
    }
    if unit.service != "identity":  # identity checks tokens with its own keys
        environment[f"{p}JWKS_URL"] = f"http://identity:{HTTP_PORT}/.well-known/jwks.json"
    environment |= {p + key: value for key, value in unit.config.items()}
    for var in unit.secrets:
        environment[p + var] = _secret(p + var)
    if SMTP in unit.external:
        environment[f"{p}SINK_HTTP_URL"] = "http://mailsink:8026"
    return {
        **COMMON,
        "image": IMAGE.format(name=unit.name),
        "build": _build(unit.service),
        "environment": environment,
    }


def document() -> dict[str, Any]:
    all_units = units()
    passwords = {f"{u.prefix}DATABASE_PASSWORD": _secret(f"{u.prefix}DATABASE_PASSWORD")
                 for u in all_units}
    doc: dict[str, Any] = {
        "name": "mercato",
        "services": {
            "postgres": {
                "image": POSTGRES_IMAGE,
                "environment": {"POSTGRES_PASSWORD": _secret("POSTGRES_PASSWORD"),
                                "MERCATO_SERVICES": " ".join(u.service for u in all_units),
                                **passwords},
                "volumes": ["postgres:/var/lib/postgresql",
                            "./postgres-init.sh:/docker-entrypoint-initdb.d/mercato.sh:ro"],
                "healthcheck": {"test": ["CMD", "pg_isready", "-U", "postgres"],
                                "interval": "5s", "timeout": "3s", "retries": 10},
                "restart": "unless-stopped",
            },
            "nats": {
                "image": NATS_IMAGE,
                "command": ["--jetstream", "--store_dir", "/data", "--http_port", "8222"],
                "volumes": ["nats:/data"],
                "restart": "unless-stopped",
            },
            "edge": {
                "image": ENVOY_IMAGE,
                "command": ["envoy", "-c", "/etc/envoy/envoy.yaml", "--concurrency", "2"],
                "volumes": ["./envoy.yaml:/etc/envoy/envoy.yaml:ro"],
                "ports": ["8080:8080"],
                "depends_on": {"identity": {"condition": "service_healthy"}},
                "restart": "unless-stopped",
            },
            "payments-provider": {
                "image": IMAGE.format(name="simulators"), "build": SIMULATORS_BUILD,
                "command": ["python", "-m", "simulators.payment_provider"],
                "environment": {"PAYMENTS_PROVIDER_HOST": "0.0.0.0",
                                "PAYMENTS_PROVIDER_PORT": str(PSP.port),
                                "PAYMENTS_PROVIDER_DATA_DIR": "/data"},
                # Simulated state only: kept in memory, gone with the container.
                "tmpfs": [TMP, "/data:mode=1777,size=64m"],
                "healthcheck": _python_health(f"http://127.0.0.1:{PSP.port}/health"),
                "read_only": True, "user": "10001:10001", "cap_drop": ["ALL"],
                "security_opt": ["no-new-privileges:true"], "restart": "unless-stopped",
            },
            "mailsink": {
                "image": IMAGE.format(name="simulators"), "build": SIMULATORS_BUILD,
                "command": ["python", "-m", "simulators.mail_sink"],
                "environment": {"NOTIFICATIONS_SINK_HOST": "0.0.0.0",
                                "NOTIFICATIONS_SINK_SMTP_PORT": str(SMTP.port),
                                "NOTIFICATIONS_SINK_HTTP_PORT": "8026",
                                "NOTIFICATIONS_SINK_DATA_DIR": "/data"},
                "tmpfs": [TMP, "/data:mode=1777,size=64m"],
                "healthcheck": _python_health("http://127.0.0.1:8026/health"),
                "read_only": True, "user": "10001:10001", "cap_drop": ["ALL"],
                "security_opt": ["no-new-privileges:true"], "restart": "unless-stopped",
            },
        },
        "volumes": {"postgres": {}, "nats": {}},
    }
    for unit in all_units:
        doc["services"][unit.name] = service(unit)
    return doc
