from __future__ import annotations

from typing import ClassVar

from chassis.settings import UpstreamSettings
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict


class OrdersSettings(UpstreamSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERS_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "orders"

    # Bare service names are resolved through the registry; tests point these elsewhere.
    identity_url: str = "http://identity"
    catalog_url: str = "http://catalog"
    # Exchanges a card_number order's card for a payment method before anything is stored.
    payments_url: str = "http://payments"
    # upstream_timeout_s, upstream_retries (UpstreamSettings): one bound per attempt on
    # identity, catalog and payments; GETs are retried.
    # How often each instance re-drives sagas past their step's deadline; 0 turns it off.
    reconciler_interval_s: float = Field(default=1.0, ge=0)
    # New orders get 503 (Retry-After) while this many order sagas are running (0: no limit),
    # counted every admission_refresh_s. See service_layer/admission.py.
    max_sagas_in_flight: int = Field(default=500, ge=0)
    admission_refresh_s: float = Field(default=0.5, gt=0)

    # Keys the hash of a card_number order's card in its idempotency fingerprint (HMAC-SHA256):
    # a retry with another card under the same key is told apart, and the stored hash cannot
    # be turned back into the number without this secret. Required outside development;
    # `mercato up` makes one per home (secrets/orders-card-fingerprint.json). Without it (in
    # development) the card enters the fingerprint as its length and last four digits only.
    card_fingerprint_secret: SecretStr | None = None

    @model_validator(mode="after")
    def _card_fingerprint_keyed_outside_development(self) -> OrdersSettings:
        if self.environment != "development" and self.card_fingerprint_secret is None:
            raise ValueError(f"ORDERS_CARD_FINGERPRINT_SECRET is required when environment="
                             f"{self.environment}: it keys the hash of a card in an order's "
                             "idempotency fingerprint")
        return self

    @property
    def card_fingerprint_key(self) -> bytes | None:
        secret = self.card_fingerprint_secret
        return secret.get_secret_value().encode() if secret is not None else None
