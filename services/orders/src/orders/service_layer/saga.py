"""The order saga: reserve stock, charge the payment, create the shipment (held until the
order is approved); and how its end settles the order.

Since ADR 0053 payments sends the shipment's command itself once the charge is captured
(the command carries it: ``chassis.messaging.forwarding``); orders hears from payments only
a decline, and then what shipping answers. Since ADR 0051 the payment is one step,
``ChargePayment`` (authorize and capture together): an order costs one command and one
reply fewer. It comes before the shipment so that a declined card, the usual failure, is
undone by releasing the stock alone; a shipment that cannot be made (rare: the address was
checked when the order was placed) refunds the charge. Sagas that an older release started
run on to their end on the definition they started with (``ORDER_V2``: ADR 0051's, under
``order.v2``; ``ORDER_V1``: stock, authorize, shipment, capture, under ``order``); the
engine picks the definition by the name each saga row carries.

Read top to bottom: the commands each step sends, what each reply changes in the saga's
data, what happens to the order when the saga ends (``settle``, the definition's ``on_end``,
run by the engine in the transaction that ends the saga), then the definition itself.

The saga id is the order id: inventory, payments and shipping correlate the events they
publish by order id. Every id a command carries is derived from the order id (reservation =
order id, payment = ``pay-<order>``, shipment = ``shp-<order>``), so a command re-sent by the
reconciler is the same command and stays idempotent at its receiver.

Saga data (JSON): order_id, customer_id, lines [{sku, quantity}], amount, currency,
payment_method_id (payments' token for the customer's card; only until payments declined or
the saga ended), card_last4, address (ShippingAddress fields), and what replies add
(tracking_number, reason). No card number: orders exchanges a card for a payment method
before the saga starts. A saga started by an older release may still hold ``card_number``
until payments answers: its AuthorizePayment is re-sent as v1, which payments still handles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from chassis.messaging.outbox import stage
from chassis.saga import (
    SagaDefinition,
    SagaEnd,
    SagaInstance,
    Status,
    Step,
    command_subjects,
    record_event,
)
from contracts.base import Command, Event
from contracts.inventory.v1 import (
    ReleaseStock,
    ReserveStock,
    RestockReservation,
    StockLine,
    StockReservationFailed,
    StockReserved,
)
from contracts.payments import v1
from contracts.payments.v1 import (
    CapturePayment,
    ChargePayment,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    RefundPayment,
    VoidPayment,
)
from contracts.payments.v2 import AuthorizePayment
from contracts.shipping.v1 import (
    CancelShipment,
    CreateShipment,
    ShipmentCreated,
    ShipmentCreationFailed,
    ShipmentLine,
    ShippingAddress,
)
from sqlalchemy.ext.asyncio import AsyncSession

from orders.adapters.repository import OrdersRepository
from orders.domain.model import PENDING, rejection_reason
from orders.service_layer import events

log = structlog.get_logger("orders")

Data = dict[str, Any]
Builder = Callable[[Data], Command]  # a command from the saga's data
SAGA_NAME = "order.v3"
SAGA_NAME_V2 = "order.v2"  # sagas started before ADR 0053
SAGA_NAME_V1 = "order"  # sagas started before ADR 0051
STEP_DEADLINE_S = 10.0
STEP_RESENDS = 2
PAYMENT_METHOD_KEY = "payment_method_id"
CARD_LAST4_KEY = "card_last4"
LEGACY_CARD_KEY = "card_number"  # in the data of sagas started before payment methods
# Kept out of the saga's history and removed from its data once payments answered (the
# engine removes them anyway when the saga ends: a decline or a timeout ends it with them).
SECRET_KEYS = (PAYMENT_METHOD_KEY, LEGACY_CARD_KEY)


def payment_id(order_id: str) -> str:
    return f"pay-{order_id}"


def shipment_id(order_id: str) -> str:
    return f"shp-{order_id}"


def _reason(d: Data) -> str | None:
    failure = d.get("failure") or {}
    return str(failure["reason"]) if failure.get("reason") else d.get("cancel_reason")


# -- commands ----------------------------------------------------------------------------------

def reserve_stock(d: Data) -> ReserveStock:
    return ReserveStock(reservation_id=d["order_id"], order_id=d["order_id"],
                        lines=[StockLine(sku=li["sku"], quantity=li["quantity"])
                               for li in d["lines"]])


def release_stock(d: Data) -> ReleaseStock:
    return ReleaseStock(reservation_id=d["order_id"], reason=_reason(d))


def authorize_payment(d: Data) -> AuthorizePayment | v1.AuthorizePayment:
    if LEGACY_CARD_KEY in d:  # a saga started by an older release, re-sent
        return v1.AuthorizePayment(payment_id=payment_id(d["order_id"]),
                                   order_id=d["order_id"], amount=d["amount"],
                                   currency=d["currency"], card_number=d[LEGACY_CARD_KEY])
    return AuthorizePayment(payment_id=payment_id(d["order_id"]), order_id=d["order_id"],
                            customer_id=d["customer_id"], amount=d["amount"],
                            currency=d["currency"], payment_method_id=d[PAYMENT_METHOD_KEY],
                            card_last4=d[CARD_LAST4_KEY])


# What the step sends (the diagram reads it): v1 only for sagas started before v2 existed.
authorize_payment.saga_command = AuthorizePayment.message_type()  # type: ignore[attr-defined]


def charge_payment(d: Data) -> ChargePayment:
    return ChargePayment(payment_id=payment_id(d["order_id"]), order_id=d["order_id"],
                         customer_id=d["customer_id"], amount=d["amount"],
                         currency=d["currency"], payment_method_id=d[PAYMENT_METHOD_KEY],
                         card_last4=d[CARD_LAST4_KEY])


def void_payment(d: Data) -> VoidPayment:
    return VoidPayment(payment_id=payment_id(d["order_id"]), order_id=d["order_id"],
                       reason=_reason(d))


def create_shipment(d: Data) -> CreateShipment:
    return CreateShipment(shipment_id=shipment_id(d["order_id"]), order_id=d["order_id"],
                          customer_id=d["customer_id"],
                          address=ShippingAddress(**d["address"]),
                          lines=[ShipmentLine(sku=li["sku"], quantity=li["quantity"])
                                 for li in d["lines"]])


def cancel_shipment(d: Data) -> CancelShipment:
    return CancelShipment(shipment_id=shipment_id(d["order_id"]), order_id=d["order_id"],
                          reason=_reason(d))


def capture_payment(d: Data) -> CapturePayment:
    return CapturePayment(payment_id=payment_id(d["order_id"]), order_id=d["order_id"])


def refund_payment(d: Data) -> RefundPayment:
    return RefundPayment(payment_id=payment_id(d["order_id"]), order_id=d["order_id"],
                         reason=_reason(d))


# -- replies -----------------------------------------------------------------------------------

def _failed(payload: dict[str, Any]) -> dict[str, Any]:
    return {"reason": str(payload.get("reason") or "unknown")}


def _forget_payment_method(d: Data) -> None:
    # Payments answered: the payment method (or an older saga's card number) is never needed
    # again, so it leaves the saga data (the engine saves this same dict). Returned updates
    # are recorded in the history, so the removal cannot travel through them.
    for key in SECRET_KEYS:
        d.pop(key, None)


def payment_authorized(d: Data, p: dict[str, Any]) -> dict[str, Any]:
    _forget_payment_method(d)
    return {CARD_LAST4_KEY: p.get("card_last4") or d.get(CARD_LAST4_KEY)}


def payment_charged(d: Data, _p: dict[str, Any]) -> None:
    _forget_payment_method(d)


def payment_declined(d: Data, p: dict[str, Any]) -> dict[str, Any]:
    _forget_payment_method(d)
    return _failed(p)


def shipment_created(_d: Data, p: dict[str, Any]) -> dict[str, Any]:
    return {"tracking_number": p.get("tracking_number")}


def failed(_d: Data, p: dict[str, Any]) -> dict[str, Any]:
    return _failed(p)


# Every event the saga awaits, by the service whose stream carries it.
REPLIES: tuple[type[Event], ...] = (
    StockReserved, StockReservationFailed, PaymentAuthorized, PaymentDeclined,
    ShipmentCreated, ShipmentCreationFailed, PaymentCaptured, PaymentFailed)


def _t(contract: type[Event]) -> str:
    return contract.message_type()


def restock_reservation(d: Data) -> RestockReservation:
    return RestockReservation(reservation_id=d["order_id"], reason=_reason(d))


# A COMPLETED saga approves its order: the units leave stock and the parcel goes to the
# carrier (shipping holds it until then, so the saga's compensation can always cancel it).
# No command carries that (ADR 0054): inventory and shipping read OrderApproved, which names
# the reservation and the shipment (before, orders sent CommitReservation and ReleaseShipment,
# which inventory and shipping still take from an older release).

# After a COMPLETED saga the customer asked to cancel: everything it did, undone.
UNDO_COMPLETED: tuple[Builder, ...] = (cancel_shipment, refund_payment, release_stock)
# After an APPROVED order's shipment was cancelled: the money and the committed units back
# (service_layer/cancellation.py).
UNDO_APPROVED: tuple[Builder, ...] = (refund_payment, restock_reservation)


# -- the end -----------------------------------------------------------------------------------

async def settle(session: AsyncSession, saga: SagaInstance, end: SagaEnd) -> None:
    """The saga has ended: finish its order, still PENDING, in the same transaction.

    COMPLETED: APPROVED (+ OrderApproved, which commits the reservation at inventory and
    releases the shipment at shipping, ADR 0054), or, when the customer asked to cancel
    meanwhile, CANCELLED with everything the saga did undone
    (+ CancelShipment, RefundPayment, ReleaseStock, OrderCancelled). COMPENSATED (or FAILED:
    a compensation could not be built, logged by the engine): REJECTED with the failure's
    reason (+ OrderRejected). A crash between the saga's end and the order's cannot happen:
    they commit together or not at all."""
    order_id = str(saga.id)
    # The engine holds the saga's row; the cancel endpoint takes only the order's: locks are
    # always taken saga first.
    repo = OrdersRepository(session)
    order = await repo.get(order_id, for_update=True)
    if order is None or order.status != PENDING:
        return
    sent: list[str] = []
    if end.status == Status.COMPLETED and order.cancel_requested:
        undo_data = {**saga.data, "cancel_reason": "cancelled_by_customer"}
        for builder in UNDO_COMPLETED:
            sent.append((await stage(session, builder(undo_data), correlation_id=order_id,
                                     causation_id=end.causation_id)).message_type)
        order.cancel(end.at)
        await events.order_cancelled(session, order)
    elif end.status == Status.COMPLETED:
        order.approve(end.at)
        # The ids its steps reserved and shipped under (reserve_stock, create_shipment).
        await events.order_approved(session, order,
                                    tracking_number=saga.data.get("tracking_number"),
                                    reservation_id=order_id, shipment_id=shipment_id(order_id))
    else:
        order.reject(rejection_reason(saga.data.get("failure")), end.at)
        await events.order_rejected(session, order)
    await repo.save(order)
    await record_event(session, saga.id, f"order_{order.status.lower()}", at=end.at,
                       detail={"reason": order.reason, "commands_sent": sent})
    log.info("order_settled", order_id=order_id, status=order.status, reason=order.reason,
             saga_status=end.status)


# -- the definitions ---------------------------------------------------------------------------

def _step(name: str, command: Builder, success: dict[str, Any], failure: dict[str, Any],
          compensation: Builder) -> Step:
    return Step(name, command, success=success, failure=failure, compensation=compensation,
                deadline_s=STEP_DEADLINE_S, max_resends=STEP_RESENDS)


RESERVE_STOCK = _step("reserve_stock", reserve_stock, {_t(StockReserved): None},
                      {_t(StockReservationFailed): failed}, release_stock)
CREATE_SHIPMENT = _step("create_shipment", create_shipment,
                        {_t(ShipmentCreated): shipment_created},
                        {_t(ShipmentCreationFailed): failed}, cancel_shipment)

CHARGE_PAYMENT = _step("charge_payment", charge_payment,
                       {_t(PaymentCaptured): payment_charged},
                       {_t(PaymentDeclined): payment_declined}, void_payment)

ORDER = SagaDefinition(SAGA_NAME, [
    RESERVE_STOCK,
    # Payments sends CreateShipment itself once the charge is captured (ADR 0053): the
    # capture is not an answer orders has to handle. A decline still comes here, and so
    # does what shipping answers; a timeout undoes the charge and the shipment together.
    # Its compensation, VoidPayment, refunds the charge (the shipment failed or timed out),
    # or, when the deadline passed, refuses a charge still to come.
    Step("charge_payment", charge_payment, success={_t(PaymentCaptured): None},
         failure={_t(PaymentDeclined): payment_declined}, compensation=void_payment,
         deadline_s=STEP_DEADLINE_S, max_resends=STEP_RESENDS, forward=True),
    CREATE_SHIPMENT,
], description="Place an order: stock, then the charge, whose receiver sends the shipment "
               "(held until approval); undone in reverse on failure. The saga id is the "
               "order id.",
   on_end=settle, secret_keys=SECRET_KEYS)

# ADR 0051's definition, for the sagas an older release started: orders answered the capture
# itself and sent the shipment.
ORDER_V2 = SagaDefinition(SAGA_NAME_V2, [
    RESERVE_STOCK,
    CHARGE_PAYMENT,
    CREATE_SHIPMENT,
], description="Before ADR 0053: stock, charge, then orders sends the shipment. Only sagas "
               "started by an older release still run on it.",
   on_end=settle, secret_keys=SECRET_KEYS)

# The definition before ADR 0051, for the sagas an older release started: never started now.
ORDER_V1 = SagaDefinition(SAGA_NAME_V1, [
    RESERVE_STOCK,
    _step("authorize_payment", authorize_payment, {_t(PaymentAuthorized): payment_authorized},
          {_t(PaymentDeclined): payment_declined}, void_payment),
    CREATE_SHIPMENT,
    _step("capture_payment", capture_payment, {_t(PaymentCaptured): None},
          {_t(PaymentFailed): failed}, refund_payment),
], description="Before ADR 0051: stock, payment authorized, shipment, capture. Only sagas "
               "started by an older release still run on it.",
   on_end=settle, secret_keys=SECRET_KEYS)

# What the orders service's engine knows: the one it starts, and the ones sagas in flight at
# an upgrade may still be on.
DEFINITIONS = (ORDER, ORDER_V2, ORDER_V1)

# Every command orders may send: the definitions' steps and compensations, and what undoes an
# order after its saga ended. The broker lets orders publish these subjects and no other
# service's (ADR 0056): CommitReservation and ReleaseShipment are no longer among them.
COMMANDS_SENT = command_subjects(
    [*(b for d in DEFINITIONS for b in d.builders()), *UNDO_COMPLETED, *UNDO_APPROVED])
