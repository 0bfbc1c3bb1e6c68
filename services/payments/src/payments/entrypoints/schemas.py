"""The payments' public JSON shapes. A card comes in once, to be exchanged for a payment
method; after that it appears as its last four digits only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from chassis.cards import CardNumber
from pydantic import BaseModel, ConfigDict, StringConstraints

from payments.domain.model import Balance, LedgerEntry, Payment, PaymentMethod, money_text

IdRef = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class PaymentMethodIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    card_number: CardNumber


class PaymentMethodOut(BaseModel):
    id: str
    last4: str
    brand: str
    created_at: datetime


class PaymentMethodListOut(BaseModel):
    items: list[PaymentMethodOut]


class Money(BaseModel):
    amount: str
    currency: str


class PaymentOut(BaseModel):
    payment_id: str
    order_id: str
    status: str
    amount: Money | None
    card_last4: str | None
    provider_ref: str | None
    reason: str | None
    created_at: datetime
    updated_at: datetime


class PaymentListOut(BaseModel):
    items: list[PaymentOut]


class EntryOut(BaseModel):
    payment_id: str
    kind: str
    amount: Money
    created_at: datetime


class LedgerOut(BaseModel):
    order_id: str
    entries: list[EntryOut]
    authorized: str
    captured: str
    voided: str
    refunded: str
    held: str
    net_captured: str


def _money(amount: Any, currency: str | None) -> dict[str, str] | None:
    if amount is None or currency is None:
        return None
    return {"amount": money_text(amount), "currency": currency}


def payment_json(p: Payment) -> dict[str, Any]:
    return {"payment_id": p.payment_id, "order_id": p.order_id, "status": p.status.upper(),
            "amount": _money(p.amount, p.currency), "card_last4": p.card_last4,
            "provider_ref": p.provider_ref, "reason": p.reason,
            "created_at": p.created_at.isoformat(), "updated_at": p.updated_at.isoformat()}


def ledger_json(order_id: str, entries: list[LedgerEntry], b: Balance) -> dict[str, Any]:
    return {"order_id": order_id,
            "entries": [{"payment_id": e.payment_id, "kind": e.kind,
                         "amount": _money(e.amount, e.currency),
                         "created_at": e.created_at.isoformat()} for e in entries],
            "authorized": money_text(b.authorized), "captured": money_text(b.captured),
            "voided": money_text(b.voided), "refunded": money_text(b.refunded),
            "held": money_text(b.held), "net_captured": money_text(b.net_captured)}


def payment_method_json(m: PaymentMethod) -> dict[str, Any]:
    return {"id": m.id, "last4": m.last4, "brand": m.brand,
            "created_at": m.created_at.isoformat()}
