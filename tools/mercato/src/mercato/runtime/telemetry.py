"""Telemetry on by default: what the supervisor tells the console, the services and Envoy so
that every process exports its spans to the console without configuration.

The console (``python -m mercato.console``) is the OTLP/HTTP receiver; it listens on the
home's ``console`` port on loopback. Two secrets of the home guard it: the ingest token the
exporters send as a bearer token, and the login token in the console's URL. Sampling is a
ratio of new traces (``mercato up --trace-sampling``): the Python services use the SDK's
parent-based ratio sampler and Envoy the same percentage, so a trace the edge starts is kept
or dropped whole.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import asdict, dataclass
from typing import Any

from mercato.runtime.paths import Home, Ports

INGEST_SECRET = "telemetry-ingest-token"  # noqa: S105 - a file name
CONSOLE_SECRET = "console-token"  # noqa: S105 - a file name
PROMETHEUS_SECRET = "prometheus-password"  # noqa: S105 - a file name
PROMETHEUS_USER = "mercato"


def _token(home: Home, name: str) -> str:
    stored = home.read_secret(name)
    if stored is None or not stored.get("token"):
        stored = {"token": secrets.token_urlsafe(32)}
        home.write_secret(name, stored)  # 0600 in the 0700 secrets/
    return str(stored["token"])


def ingest_token(home: Home) -> str:
    return _token(home, INGEST_SECRET)


def console_token(home: Home) -> str:
    return _token(home, CONSOLE_SECRET)


def prometheus_password(home: Home) -> str:
    """The password of the console's Prometheus (user ``mercato``): its HTTP API has no
    other door, and every local side door needs the home's credentials."""
    return _token(home, PROMETHEUS_SECRET)


def console_url(home: Home, port: int) -> str:
    """The URL `mercato up` prints: the first visit trades the token for a session cookie."""
    return f"http://127.0.0.1:{port}/login?token={console_token(home)}"


def parse_sampling(raw: str | float) -> float:
    """``1``, ``0.25`` or ``25%`` -> a ratio in [0, 1]; ValueError otherwise."""
    text = str(raw).strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"--trace-sampling expects a ratio (0.25) or a percentage (25%), "
                         f"got {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"--trace-sampling must be between 0 and 1 (0 % and 100 %), got {raw}")
    return value


@dataclass(frozen=True)
class Telemetry:
    sampling: float = 1.0
    trace_sql: bool = False
    trace_publish: bool = False

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def endpoint(self, ports: Ports) -> str:
        return f"http://127.0.0.1:{ports.console}"

    def service_env(self, home: Home, ports: Ports, service: str) -> dict[str, str]:
        p = service.upper() + "_"
        return {
            f"{p}OTLP_ENDPOINT": self.endpoint(ports),
            f"{p}TRACE_SQL": "true" if self.trace_sql else "false",
            f"{p}TRACE_PUBLISH": "true" if self.trace_publish else "false",
            # Read by the OTLP exporter and the SDK's sampler themselves.
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"authorization=Bearer%20{ingest_token(home)}",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": repr(self.sampling),
        }

    def edge(self, home: Home, ports: Ports) -> Any:
        from mercato.gateway.render import EdgeTelemetry

        return EdgeTelemetry(port=ports.console, token=ingest_token(home),
                             sampling_percent=round(self.sampling * 100, 4))

    def console_argv(self, home: Home) -> list[str]:
        return [sys.executable, "-m", "mercato.console", "--home", str(home.root)]

    def console_env(self) -> dict[str, str]:
        return {}
