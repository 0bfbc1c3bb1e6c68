from __future__ import annotations

from typing import ClassVar

from chassis.settings import UpstreamSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class CartSettings(UpstreamSettings):
    model_config = SettingsConfigDict(env_prefix="CART_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "cart"

    # Bare service names are resolved through the registry; tests point these elsewhere.
    catalog_url: str = "http://catalog"
    orders_url: str = "http://orders"
    # upstream_timeout_s, upstream_retries (UpstreamSettings): one bound per attempt on the
    # catalog, and retries (the order POST too: it carries an Idempotency-Key, so a retry
    # cannot place a second order).
    # One bound per attempt on placing the order (orders asks identity and catalog first).
    # Attempts together stay under the edge's 15 s route timeout.
    orders_timeout_s: float = Field(default=4.0, gt=0)
