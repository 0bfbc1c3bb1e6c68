"""Service settings on pydantic-settings: one prefix per service, placeholders refused outside dev.

A service subclasses ``ServiceSettings`` and sets its own ``env_prefix`` (``CATALOG_`` ...), so
one environment can hold every service's configuration without collisions.
"""

from __future__ import annotations

from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "change_me", "secret", "password", "placeholder", "dev",
     "development", "test", "example", "xxx", "todo"}
)

Environment = Literal["development", "test", "production"]


class ServiceSettings(BaseSettings):
    """Settings every service has; ``service_name`` is fixed by the subclass."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: ClassVar[str] = "service"

    instance_id: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    environment: Environment = "development"
    database_url: str = ""
    # Empty means "run without NATS" (unit and API tests); readiness then ignores it.
    nats_url: str = "nats://127.0.0.1:4222"
    # The service's NATS NKey seed (SU...): the broker knows only its public key and the
    # subjects it may use. None connects anonymously (a test broker without authorization).
    nats_nkey_seed: SecretStr | None = None
    # ed25519 key (base64url) this service signs its registry entries with, and the public
    # key of every service whose entries it trusts; with no trusted keys, entries go unchecked.
    registry_signing_key: SecretStr | None = None
    registry_trusted_keys: dict[str, str] = {}
    # A bare service name as host ("identity") is resolved through the registry.
    jwks_url: str = "http://identity/.well-known/jwks.json"
    jwt_issuer: str = "mercato-identity"
    jwt_audience: str = "mercato"
    otlp_endpoint: str | None = None
    # A span per SQL statement (only while exporting). None: on whenever spans are exported;
    # the local runtime turns it off unless `mercato up --trace-sql` (it costs CPU per order).
    trace_sql: bool | None = None
    # A PRODUCER span per message the outbox publishes (`mercato up --trace-publish`). Off: a
    # consumer's span is the child of the span that staged the message (the request's, or
    # the handler's that sent it on), one span per hop; its publish spans were a third of
    # an order's spans, each paid for in the service, its exporter and the console (ADR 0048).
    trace_publish: bool = False
    max_body_bytes: int = 1_048_576
    log_level: str = "info"
    register_instance: bool = True
    db_pool_size: int = 10
    # Migrate the database, then exit 0 without serving: a Kubernetes init container runs
    # the service's own command this way, so a new version's schema is in place (and a
    # failed migration shows as the pod's init error) before any of its instances serve.
    migrate_only: bool = False

    @property
    def instance(self) -> str:
        return self.instance_id or f"{self.service_name}-0"

    @property
    def api_prefix(self) -> str:
        return f"/api/{self.service_name}"

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> ServiceSettings:
        if self.environment == "development":
            return self
        bad: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if (isinstance(value, SecretStr)
                    and value.get_secret_value().lower() in PLACEHOLDER_SECRETS):
                bad.append(name)
        if self.database_url:
            password = urlsplit(self.database_url).password
            if password is not None and password.lower() in PLACEHOLDER_SECRETS:
                bad.append("database_url (password)")
        if bad:
            raise ValueError(
                f"placeholder secrets are refused when environment={self.environment}: "
                + ", ".join(bad) + "; set real values in the environment"
            )
        return self


class UpstreamSettings(ServiceSettings):
    """Settings of a service that calls other services over HTTP: what
    ``chassis.app.service_client`` builds its client from (``<PREFIX>_UPSTREAM_TIMEOUT_S``,
    ``<PREFIX>_UPSTREAM_RETRIES``)."""

    # One bound per attempt; a call that is safe to repeat (an idempotent method, or one
    # carrying an Idempotency-Key) is retried this many times.
    upstream_timeout_s: float = Field(default=2.0, gt=0)
    upstream_retries: int = Field(default=2, ge=0)
