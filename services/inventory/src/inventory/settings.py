from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from chassis.settings import ServiceSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from inventory.domain.model import Policy


class InventorySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INVENTORY_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "inventory"

    # A reservation not committed or released by then is released by the expiry sweep; the
    # order saga's own deadline should be shorter, so it compensates before stock expires.
    reservation_ttl_s: int = Field(default=900, gt=0)
    # StockLow is published when availability drops below this.
    low_stock_threshold: int = Field(default=5, ge=0)
    # How often each instance looks for expired reservations; 0 turns the sweep off.
    expiry_interval_s: float = Field(default=5.0, ge=0)
    # Reservations released per sweep transaction (the rest wait for the next round).
    expiry_batch_size: int = Field(default=100, gt=0)

    def policy(self) -> Policy:
        return Policy(reservation_ttl=timedelta(seconds=self.reservation_ttl_s),
                      low_stock_threshold=self.low_stock_threshold)
