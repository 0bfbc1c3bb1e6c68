from __future__ import annotations

from typing import ClassVar

from chassis.settings import ServiceSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict

API_PREFIX = "/api/history"


class OrderHistorySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDER_HISTORY_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "order_history"

    # Largest page the list answers, whatever page_size asks for (1-100).
    max_page_size: int = Field(default=100, ge=1, le=100)

    @property
    def api_prefix(self) -> str:
        # The public path is /api/history, not /api/order_history: the chassis serves the
        # OpenAPI document and the docs under this prefix too.
        return API_PREFIX
