"""Every published contract, found by message type."""

from __future__ import annotations

from contracts.base import Contract
from contracts.catalog import v1 as catalog_v1
from contracts.inventory import v1 as inventory_v1

ALL: list[type[Contract]] = [
    catalog_v1.ProductCreated, catalog_v1.ProductUpdated, catalog_v1.PriceChanged,
    catalog_v1.ProductDiscontinued,
    inventory_v1.ReserveStock, inventory_v1.ReleaseStock, inventory_v1.CommitReservation,
    inventory_v1.StockReserved, inventory_v1.StockReservationFailed,
    inventory_v1.StockReleased, inventory_v1.ReservationCommitted, inventory_v1.StockLow,
]

BY_TYPE: dict[str, type[Contract]] = {c.message_type(): c for c in ALL}
