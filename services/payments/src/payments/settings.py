from __future__ import annotations

from typing import ClassVar

from chassis.settings import ServiceSettings
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

DEFAULT_PROVIDER_PORT = 8790


class PaymentsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMENTS_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "payments"

    # The simulated provider (``python -m simulators.payment_provider``) or a real one's base URL.
    provider_url: str = f"http://127.0.0.1:{DEFAULT_PROVIDER_PORT}"
    # Sent as a bearer token (the simulator reads the same variable, PAYMENTS_PROVIDER_API_TOKEN).
    provider_api_token: SecretStr | None = None
    # Per provider call. The saga's AuthorizePayment deadline should exceed
    # provider_attempts * (2 * provider_timeout_s + provider_retry_delay_s) so one delivery
    # can finish its query-then-retry round before the saga re-sends or compensates.
    provider_timeout_s: float = Field(default=3.0, gt=0)
    provider_attempts: int = Field(default=3, ge=1, le=10)
    provider_retry_delay_s: float = Field(default=0.2, ge=0)
