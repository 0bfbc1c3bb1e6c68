"""Every published contract, found by message type."""

from __future__ import annotations

from contracts.base import Contract
from contracts.catalog import v1 as catalog_v1
from contracts.identity import v1 as identity_v1
from contracts.inventory import v1 as inventory_v1
from contracts.orders import v1 as orders_v1
from contracts.payments import v1 as payments_v1
from contracts.payments import v2 as payments_v2
from contracts.shipping import v1 as shipping_v1

ALL: list[type[Contract]] = [
    catalog_v1.ProductCreated, catalog_v1.ProductUpdated, catalog_v1.PriceChanged,
    catalog_v1.ProductDiscontinued,
    identity_v1.AccountRegistered, identity_v1.AccountUpdated, identity_v1.AddressAdded,
    identity_v1.AddressUpdated,
    inventory_v1.ReserveStock, inventory_v1.ReleaseStock, inventory_v1.CommitReservation,
    inventory_v1.RestockReservation,
    inventory_v1.StockReserved, inventory_v1.StockReservationFailed,
    inventory_v1.StockReleased, inventory_v1.ReservationCommitted, inventory_v1.StockLow,
    payments_v1.AuthorizePayment, payments_v1.CapturePayment, payments_v1.ChargePayment,
    payments_v1.VoidPayment, payments_v1.RefundPayment, payments_v1.PaymentAuthorized,
    payments_v1.PaymentDeclined,
    payments_v1.PaymentCaptured, payments_v1.PaymentVoided, payments_v1.PaymentRefunded,
    payments_v1.PaymentFailed, payments_v2.AuthorizePayment,
    shipping_v1.CreateShipment, shipping_v1.CancelShipment, shipping_v1.ReleaseShipment,
    shipping_v1.ShipmentCreated,
    shipping_v1.ShipmentCreationFailed, shipping_v1.ShipmentCancelled,
    shipping_v1.ShipmentCancellationRefused, shipping_v1.ShipmentStatusChanged,
    orders_v1.OrderPlaced, orders_v1.OrderApproved, orders_v1.OrderRejected,
    orders_v1.OrderCancelled,
]

BY_TYPE: dict[str, type[Contract]] = {c.message_type(): c for c in ALL}
