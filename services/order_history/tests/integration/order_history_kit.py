"""Helpers for the order_history integration tests: events for one order, sent through the
service's real inbox consumers as in-memory deliveries, and the rows read back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chassis.db import Database
from chassis.messaging.consumer import InboxConsumer
from chassis.messaging.envelope import Envelope
from chassis.messaging.memory import InMemoryBroker, MemoryDelivery
from contracts.base import Contract
from contracts.orders.v1 import OrderApproved, OrderCancelled, OrderLine, OrderPlaced
from contracts.payments.v1 import (
    PaymentAuthorized,
    PaymentCaptured,
    PaymentRefunded,
)
from contracts.shipping.v1 import ShipmentCreated, ShipmentStatusChanged
from order_history.entrypoints.consumers import consumer_specs
from sqlalchemy import text

# The columns every event-derived comparison uses (updated_at is the wall clock of the write).
VIEW_COLUMNS = ("order_id, customer_id, status, total, currency, lines, reason, payment_status, "
                "amount_captured, amount_refunded, shipment_status, tracking_number, placed_at, "
                "last_event_at")


def envelope(message: Contract) -> Envelope:
    payload = message.to_payload()
    return Envelope.new(message.subject(), message.message_type(), payload,
                        correlation_id=payload.get("order_id"))


def delivery(env: Envelope, sequence: int = 1) -> MemoryDelivery:
    """One delivery of ``env``; call again with the same envelope for a redelivery that
    carries the same message id (the inbox drops it)."""
    return MemoryDelivery(env.subject, env.headers(), env.body(), sequence)


def life(order_id: str, customer: str = "alice", *, total: str = "30000") -> list[Contract]:
    """A happy order's events, in the order the saga produces them."""
    pay, ship, tracking = f"pay-{order_id}", f"ship-{order_id}", f"MS{order_id[:8].upper()}"
    return [
        OrderPlaced(order_id=order_id, customer_id=customer, total=total, currency="KRW",
                    lines=[OrderLine(product_id="p1", sku="MUG", name="Mug", quantity=2,
                                     unit_price="15000")]),
        PaymentAuthorized(payment_id=pay, order_id=order_id, amount=total, currency="KRW",
                          card_last4="4242"),
        ShipmentCreated(shipment_id=ship, order_id=order_id, customer_id=customer,
                        tracking_number=tracking),
        PaymentCaptured(payment_id=pay, order_id=order_id, amount=total, currency="KRW"),
        OrderApproved(order_id=order_id, customer_id=customer, total=total, currency="KRW",
                      amount_captured=total, tracking_number=tracking),
        ShipmentStatusChanged(shipment_id=ship, order_id=order_id, customer_id=customer,
                              status="DISPATCHED", tracking_number=tracking),
    ]


def refunded_cancel(order_id: str, customer: str = "alice") -> list[Contract]:
    """An order cancelled after capture: the money goes back."""
    return [*life(order_id, customer)[:4],
            OrderCancelled(order_id=order_id, customer_id=customer, reason="customer"),
            PaymentRefunded(payment_id=f"pay-{order_id}", order_id=order_id, amount="30000",
                            currency="KRW")]


@dataclass
class History:
    """The service's three consumers over a real database, fed by hand."""

    db: Database
    dead_letters: InMemoryBroker = field(default_factory=InMemoryBroker)

    def __post_init__(self) -> None:
        self.consumers = {spec.subjects[0].split(".")[0]: InboxConsumer(
            spec, self.db, self.dead_letters) for spec in consumer_specs()}

    async def send(self, message: Contract | Envelope | MemoryDelivery) -> str:
        if isinstance(message, Contract):
            message = envelope(message)
        d = message if isinstance(message, MemoryDelivery) else delivery(message)
        return await self.consumers[d.subject.split(".")[0]].process(d)

    async def rows(self, *order_ids: str) -> dict[str, dict[str, Any]]:
        """The event-derived columns of these orders' rows (or of every row)."""
        where = " WHERE order_id = ANY(:ids)" if order_ids else ""
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(text(f"SELECT {VIEW_COLUMNS} FROM order_view{where}"),
                                       {"ids": list(order_ids)})).mappings().all()
        return {r["order_id"]: dict(r) for r in rows}

    async def row(self, order_id: str) -> dict[str, Any] | None:
        return (await self.rows(order_id)).get(order_id)
