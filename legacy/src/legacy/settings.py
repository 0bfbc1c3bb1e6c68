"""The shop's configuration, from ``LEGACY_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass


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

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        url = env.get("LEGACY_DATABASE_URL", "").strip()
        if not url:
            raise ConfigError("LEGACY_DATABASE_URL is not set (postgresql+asyncpg://...)")
        try:
            port = int(env.get("LEGACY_PORT", "8000"))
            timeout = float(env.get("LEGACY_PROVIDER_TIMEOUT_S", "5"))
        except ValueError as exc:
            raise ConfigError(f"LEGACY_PORT / LEGACY_PROVIDER_TIMEOUT_S: {exc}") from None
        return cls(database_url=url, host=env.get("LEGACY_HOST", "127.0.0.1"), port=port,
                   provider_url=env.get("LEGACY_PROVIDER_URL", cls.provider_url).rstrip("/"),
                   provider_token=env.get("LEGACY_PROVIDER_API_TOKEN") or None,
                   provider_timeout_s=timeout,
                   otlp_endpoint=env.get("LEGACY_OTLP_ENDPOINT") or None,
                   instance_id=env.get("LEGACY_INSTANCE_ID", "legacy-1"))
