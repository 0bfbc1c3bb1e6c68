"""The shop's configuration, from ``LEGACY_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8000
    provider_url: str = "http://127.0.0.1:8790"
    provider_token: str | None = None
    provider_timeout_s: float = 5.0
    otlp_endpoint: str | None = None
    instance_id: str = "legacy-1"
    session_ttl_s: int = 7 * 24 * 3600
    currency: str = "KRW"
    # argon2id cost: argon2-cffi's defaults; tests lower them (LEGACY_ARGON2_*).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    # The services' identity provider, trusted once customers sign in there (ADR 0032): an
    # ``Authorization: Bearer`` JWT is checked against its keys and mapped to the customer by
    # ``customers.services_id``. Unset: only the shop's own sessions are accepted.
    jwks_url: str | None = None
    jwt_issuer: str = "mercato-identity"
    jwt_audience: str = "mercato"

    def passwords(self) -> Any:
        from legacy.shop import Passwords

        return Passwords(self.argon2_time_cost, self.argon2_memory_kib,
                         self.argon2_parallelism)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        url = env.get("LEGACY_DATABASE_URL", "").strip()
        if not url:
            raise ConfigError("LEGACY_DATABASE_URL is not set (postgresql+asyncpg://...)")
        try:
            port = int(env.get("LEGACY_PORT", "8000"))
            timeout = float(env.get("LEGACY_PROVIDER_TIMEOUT_S", "5"))
            argon2 = [int(env.get(f"LEGACY_ARGON2_{k}", d)) for k, d in
                      (("TIME_COST", "3"), ("MEMORY_KIB", "65536"), ("PARALLELISM", "4"))]
        except ValueError as exc:
            raise ConfigError(f"LEGACY_PORT, LEGACY_PROVIDER_TIMEOUT_S and LEGACY_ARGON2_* "
                              f"are numbers: {exc}") from None
        if argon2[0] < 1 or argon2[1] < 8 * argon2[2] or argon2[2] < 1:
            raise ConfigError("LEGACY_ARGON2_*: time cost >= 1, parallelism >= 1, memory >= "
                              "8 KiB per lane")
        return cls(database_url=url, host=env.get("LEGACY_HOST", "127.0.0.1"), port=port,
                   provider_url=env.get("LEGACY_PROVIDER_URL", cls.provider_url).rstrip("/"),
                   provider_token=env.get("LEGACY_PROVIDER_API_TOKEN") or None,
                   provider_timeout_s=timeout,
                   otlp_endpoint=env.get("LEGACY_OTLP_ENDPOINT") or None,
                   instance_id=env.get("LEGACY_INSTANCE_ID", "legacy-1"),
                   argon2_time_cost=argon2[0], argon2_memory_kib=argon2[1],
                   argon2_parallelism=argon2[2],
                   jwks_url=env.get("LEGACY_JWKS_URL", "").strip() or None,
                   jwt_issuer=env.get("LEGACY_JWT_ISSUER", "").strip() or cls.jwt_issuer,
                   jwt_audience=env.get("LEGACY_JWT_AUDIENCE", "").strip() or cls.jwt_audience)
