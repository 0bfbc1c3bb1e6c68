from __future__ import annotations

from typing import ClassVar

from chassis.settings import ServiceSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class OrdersSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERS_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "orders"

    # Bare service names are resolved through the registry; tests point these elsewhere.
    identity_url: str = "http://identity"
    catalog_url: str = "http://catalog"
    # One bound per attempt on identity/catalog; GETs are retried this many times.
    upstream_timeout_s: float = Field(default=2.0, gt=0)
    upstream_retries: int = Field(default=2, ge=0)
    # How often each instance re-drives sagas past their step's deadline; 0 turns it off.
    reconciler_interval_s: float = Field(default=1.0, ge=0)
    # New orders get 503 (Retry-After) while this many order sagas are running (0: no limit),
    # counted every admission_refresh_s. See service_layer/admission.py.
    max_sagas_in_flight: int = Field(default=500, ge=0)
    admission_refresh_s: float = Field(default=0.5, gt=0)
