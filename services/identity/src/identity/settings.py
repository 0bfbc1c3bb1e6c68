"""identity's settings: token lifetimes, login throttling and the argon2id cost."""

from __future__ import annotations

from typing import ClassVar

from chassis.settings import ServiceSettings
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict


class IdentitySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IDENTITY_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "identity"

    access_token_ttl_s: int = Field(900, ge=30, le=86_400)
    refresh_token_ttl_s: int = Field(30 * 86_400, ge=60)
    # Access tokens the migration's ACL gets for a customer whose legacy session the
    # monolith vouched for (ADR 0032): short, as nothing revokes them.
    exchanged_token_ttl_s: int = Field(300, ge=30, le=900)

    # Sign-in throttling per (account, client): this many failures cost nothing; from then
    # on each failure makes that pair wait 1 s, 2 s, 4 s ... (at most login_max_delay_s)
    # before its next attempt is checked, answered 429 with Retry-After alike for unknown
    # accounts. Other clients (the owner's own) are never delayed by it: no lockout.
    login_free_failures: int = Field(5, ge=1)
    login_base_delay_s: float = Field(1.0, gt=0)
    login_max_delay_s: float = Field(900.0, gt=0)
    # A pair's failures are forgotten this long after its last one.
    login_failures_forgotten_after_s: float = Field(86_400.0, gt=0)

    # argon2id cost. The defaults are argon2-cffi's (RFC 9106 "low memory"); tests lower them.
    argon2_time_cost: int = Field(3, ge=1)
    argon2_memory_cost_kib: int = Field(65_536, ge=8)
    argon2_parallelism: int = Field(4, ge=1)
    # Hashes running at once; more logins than this queue rather than exhaust memory.
    argon2_max_concurrent: int = Field(4, ge=1)

    # How stale an instance's view of the active signing key may be: after a rotation on
    # another instance, this one keeps signing with the old key for at most this long.
    signing_key_cache_s: float = Field(5.0, ge=0)
    # A rotated key is published this long before it signs: the edge takes up identity's
    # keys every few seconds (the gateway's jwt.refresh_s) and services refetch for an unknown
    # kid at most every 5 s; a token signed with a key a checker has not fetched yet gets 401.
    signing_key_publish_lead_s: float = Field(35.0, ge=0)
    # Unknown kids re-read the key table at most this often, so forged kids cannot turn
    # every request into a database query.
    unknown_kid_refetch_s: float = Field(1.0, ge=0)

    # Encrypts the private signing keys in the database (PKCS#8, AES-256): a database dump or
    # backup alone must not let anyone forge tokens. Required outside development; `mercato
    # up` makes one per home (secrets/identity-signing-key.json). Keys stored before it was
    # set are encrypted at the next start.
    signing_key_secret: SecretStr | None = None

    max_addresses_per_user: int = Field(50, ge=1)
    # How often expired refresh tokens are deleted.
    prune_interval_s: float = Field(3600.0, gt=0)

    @model_validator(mode="after")
    def _signing_keys_encrypted_outside_development(self) -> IdentitySettings:
        if self.environment != "development" and self.signing_key_secret is None:
            raise ValueError(f"IDENTITY_SIGNING_KEY_SECRET is required when environment="
                             f"{self.environment}: the private signing keys are stored "
                             "encrypted with it")
        return self

    @model_validator(mode="after")
    def _memory_covers_lanes(self) -> IdentitySettings:
        # argon2 needs at least 8 KiB per lane; refuse at start rather than on first login.
        if self.argon2_memory_cost_kib < 8 * self.argon2_parallelism:
            raise ValueError("argon2_memory_cost_kib must be at least 8 * argon2_parallelism")
        return self

    @property
    def key_publication_grace_s(self) -> float:
        """How long a retired key stays in the JWKS: the last token it signed must verify
        until it expires, on every instance, whatever their key caches and clock skew."""
        return (self.access_token_ttl_s + self.signing_key_cache_s
                + self.signing_key_publish_lead_s + 60.0)
