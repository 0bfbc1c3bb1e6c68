from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from chassis.settings import ServiceSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shipping.domain.model import Timetable


class ShippingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SHIPPING_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "shipping"

    # The simulated carrier: seconds a shipment stays in each status before the next move
    # (CREATED -> DISPATCHED, DISPATCHED -> IN_TRANSIT, IN_TRANSIT -> DELIVERED). The order
    # saga can cancel a shipment only until it is dispatched.
    dispatch_after_s: float = Field(default=30.0, gt=0)
    in_transit_after_s: float = Field(default=60.0, gt=0)
    deliver_after_s: float = Field(default=120.0, gt=0)
    # How often each instance looks for due moves; 0 turns the carrier off.
    carrier_interval_s: float = Field(default=1.0, ge=0)
    # Shipments moved per carrier transaction (the rest wait for the next round).
    carrier_batch_size: int = Field(default=100, gt=0)

    def timetable(self) -> Timetable:
        return Timetable(to_dispatched=timedelta(seconds=self.dispatch_after_s),
                         to_in_transit=timedelta(seconds=self.in_transit_after_s),
                         to_delivered=timedelta(seconds=self.deliver_after_s))
