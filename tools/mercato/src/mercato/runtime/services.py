"""The services `mercato up` runs, and how instance names and environments are formed."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SERVICES = ["identity", "catalog", "inventory", "payments", "shipping"]


@dataclass(frozen=True)
class Simulator:
    """A stand-in for a third party (the payment provider, later an SMTP server), run beside
    the services. Its port is chosen once per run: the services that call it are told it at
    their start, so a restarted simulator must come back on the same one."""

    name: str
    module: str
    health_path: str
    env: Callable[[int, Path], dict[str, str]]  # (port, data dir) -> its environment
    used_by: dict[str, Callable[[int], dict[str, str]]]  # service -> env pointing at it


SIMULATORS = [
    Simulator(
        name="payments-provider", module="payments.provider", health_path="/health",
        env=lambda port, data: {"PAYMENTS_PROVIDER_HOST": "127.0.0.1",
                                "PAYMENTS_PROVIDER_PORT": str(port),
                                "PAYMENTS_PROVIDER_DATA_DIR": str(data)},
        used_by={"payments": lambda port: {"PAYMENTS_PROVIDER_URL": f"http://127.0.0.1:{port}"}},
    ),
]

_SCALE = re.compile(r"^([a-z][a-z0-9_]*)=(\d+)$")


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


def repo_root() -> Path:
    """The workspace checkout (services run with it as cwd), found from this installed file."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        pyproject = parent / "pyproject.toml"
        if pyproject.is_file() and "[tool.uv.workspace]" in pyproject.read_text():
            return parent
    return Path.cwd()
