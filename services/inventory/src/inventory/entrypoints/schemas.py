"""The inventory's public JSON shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from inventory.domain.model import Reservation, Stock

# What the catalog accepts as a SKU: rows are created only for SKUs of that shape.
NewSku = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{1,39}$")]
# Lookups are looser (and bounded): an unknown SKU is a 404, not a 422.
SkuRef = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MAX_ON_HAND = 1_000_000_000


def _whole_number(value: Any) -> Any:
    # JSON has one number type: 5.0 is the integer 5 (JSON Schema says so too); strict
    # refuses the rest of what lax mode would take ("5", true).
    return int(value) if isinstance(value, float) and value.is_integer() else value


class OnHandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    on_hand: Annotated[int, BeforeValidator(_whole_number)] = Field(
        ge=0, le=MAX_ON_HAND, strict=True, description="units physically in the warehouse")


class AdjustmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200, strict=True,
                    description="the adjustment's id: a repeat answers what the first got")
    delta: Annotated[int, BeforeValidator(_whole_number)] = Field(
        ge=-MAX_ON_HAND, le=MAX_ON_HAND, strict=True,
        description="units in (+) or out (-); never 0")

    @field_validator("delta")
    @classmethod
    def _moves_something(cls, value: int) -> int:
        if value == 0:
            raise ValueError("an adjustment moves at least one unit")
        return value


class StockOut(BaseModel):
    sku: str
    on_hand: int
    available: int
    reserved: int


class AdjustmentOut(StockOut):
    adjustment_id: str
    delta: int
    repeated: bool


class StockListOut(BaseModel):
    items: list[StockOut]


class LineOut(BaseModel):
    sku: str
    quantity: int


class ReservationOut(BaseModel):
    reservation_id: str
    order_id: str | None
    status: str
    lines: list[LineOut]
    expires_at: datetime | None
    reason: str | None
    short_skus: list[str]
    created_at: datetime
    updated_at: datetime


def stock_json(s: Stock) -> dict[str, Any]:
    return {"sku": s.sku, "on_hand": s.on_hand, "available": s.available,
            "reserved": s.reserved}


def reservation_json(r: Reservation) -> dict[str, Any]:
    return {"reservation_id": r.reservation_id, "order_id": r.order_id, "status": r.status,
            "lines": [{"sku": line.sku, "quantity": line.quantity} for line in r.lines],
            "expires_at": r.expires_at.isoformat() if r.expires_at else None,
            "reason": r.reason, "short_skus": list(r.short_skus),
            "created_at": r.created_at.isoformat(), "updated_at": r.updated_at.isoformat()}
