"""The shipping service's public JSON shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, StringConstraints

from shipping.domain.model import Shipment

IdRef = Annotated[str, StringConstraints(min_length=1, max_length=200)]
TrackingRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,32}$")]


class StepOut(BaseModel):
    status: str
    at: datetime


class ShipmentOut(BaseModel):
    id: str
    order_id: str
    status: str
    tracking_number: str | None
    created_at: datetime
    updated_at: datetime
    history: list[StepOut]


class TrackingOut(BaseModel):
    tracking_number: str
    status: str
    updated_at: datetime


def shipment_json(s: Shipment) -> dict[str, Any]:
    return {"id": s.shipment_id, "order_id": s.order_id, "status": s.status,
            "tracking_number": s.tracking_number, "created_at": s.created_at.isoformat(),
            "updated_at": s.updated_at.isoformat(),
            "history": [{"status": step.status, "at": step.at.isoformat()}
                        for step in s.history]}


def tracking_json(s: Shipment) -> dict[str, Any]:
    # Public: no order, customer, address or contents, only where the parcel is.
    return {"tracking_number": s.tracking_number, "status": s.status,
            "updated_at": s.updated_at.isoformat()}
