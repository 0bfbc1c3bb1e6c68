from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from chassis.settings import ServiceSettings
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from notifications.domain.model import RetryPolicy


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "notifications"

    # Where mail goes: the local mail sink by default (`python -m simulators.mail_sink`).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=8025, gt=0, lt=65536)
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    mail_from: str = "mercato <no-reply@mercato.local>"
    # The sink's HTTP base (e.g. http://127.0.0.1:8026) for GET /sink/messages; "" = none.
    sink_http_url: str = ""
    # The sink's API token (the same variable the sink reads), sent as a bearer token.
    sink_api_token: SecretStr | None = None
    # The sender: how often each instance looks for queued mail (0 turns it off), how many
    # it claims per round, how long a claim holds a row at most, and how old a sender's
    # heartbeat (written every fifth of it) may be before its claims are taken over.
    sender_interval_s: float = Field(default=1.0, ge=0)
    sender_batch_size: int = Field(default=20, gt=0)
    sender_lease_s: float = Field(default=60.0, gt=0)
    sender_stale_after_s: float = Field(default=10.0, gt=0)
    # How long an email waits for the one it follows (an order's "placed" before its
    # "approved"), whose event may come later -- redelivered after a crash, 30 s on.
    sender_order_wait_s: float = Field(default=120.0, ge=0)
    # Failed sends: tried up to max_attempts times, waiting retry_base_s * 2^(n-1) (capped).
    max_attempts: int = Field(default=5, gt=0)
    retry_base_s: float = Field(default=2.0, gt=0)
    retry_max_s: float = Field(default=300.0, gt=0)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.max_attempts,
                           base=timedelta(seconds=self.retry_base_s),
                           cap=timedelta(seconds=self.retry_max_s))
