"""Saga definitions are data tools can read: describe, reply types, a Mermaid drawing."""

from __future__ import annotations

from typing import Any

import pytest
from chassis.saga import SagaDefinition, Step, command_subjects
from contracts.inventory.v1 import ReleaseStock, ReserveStock, StockLine
from contracts.payments.v1 import AuthorizePayment, CapturePayment, VoidPayment

Data = dict[str, Any]


def reserve(d: Data) -> ReserveStock:
    return ReserveStock(reservation_id=d["order_id"], lines=[StockLine(sku="A", quantity=1)])


def release(d: Data) -> ReleaseStock:
    return ReleaseStock(reservation_id=d["order_id"])


def authorize(d: Data) -> AuthorizePayment:
    return AuthorizePayment(payment_id=d["order_id"], order_id=d["order_id"], amount="1",
                            currency="KRW", card_number="4242424242424242")


def void(d: Data) -> VoidPayment:
    return VoidPayment(payment_id=d["order_id"], order_id=d["order_id"])


def capture(d: Data) -> CapturePayment:
    return CapturePayment(payment_id=d["order_id"], order_id=d["order_id"])


def definition() -> SagaDefinition:
    return SagaDefinition("order", [
        Step("reserve_stock", reserve, success={"StockReserved.v1": None},
             failure={"StockReservationFailed.v1": None}, compensation=release, deadline_s=5),
        Step("authorize_payment", authorize, success={"PaymentAuthorized.v1": None},
             failure={"PaymentDeclined.v1": None}, compensation=void, max_resends=1),
        Step("capture_payment", capture, success={"PaymentCaptured.v1": None},
             failure={"PaymentFailed.v1": None}),
    ], description="place an order")


def test_describe_lists_steps_replies_and_compensations() -> None:
    described = definition().describe()
    assert described["name"] == "order" and described["description"] == "place an order"
    first, second, third = described["steps"]
    assert first == {"index": 0, "name": "reserve_stock", "command": "ReserveStock.v1",
                     "success": ["StockReserved.v1"], "failure": ["StockReservationFailed.v1"],
                     "compensation": "ReleaseStock.v1", "deadline_s": 5, "max_resends": 2,
                     "forward": False, "sent_with": 0, "chain_deadline_s": 5}
    assert second["compensation"] == "VoidPayment.v1" and second["max_resends"] == 1
    assert third["compensation"] is None


def test_reply_types_cover_every_awaited_event_once() -> None:
    assert definition().reply_types() == [
        "StockReserved.v1", "StockReservationFailed.v1", "PaymentAuthorized.v1",
        "PaymentDeclined.v1", "PaymentCaptured.v1", "PaymentFailed.v1"]


def test_outcome_of_tells_success_failure_and_unrelated() -> None:
    step = Step("s", reserve, success={"Ok.v1": lambda d, p: {"x": p["x"]}},
                failure={"No.v1": None})
    ok, handler = step.outcome_of("Ok.v1") or (None, None)
    assert ok is True and handler is not None and handler({}, {"x": 1}) == {"x": 1}
    failed = step.outcome_of("No.v1")
    assert failed is not None and failed[0] is False and failed[1]({}, {}) is None
    assert step.outcome_of("Other.v1") is None


def test_mermaid_draws_every_step_reply_and_compensation() -> None:
    drawing = definition().to_mermaid()
    assert drawing.startswith("flowchart TD\n")
    for text in ("ReserveStock.v1", "AuthorizePayment.v1", "CapturePayment.v1",
                 "StockReserved.v1", "StockReservationFailed.v1", "PaymentAuthorized.v1",
                 "PaymentDeclined.v1", "PaymentCaptured.v1", "PaymentFailed.v1",
                 "undo reserve_stock: ReleaseStock.v1", "undo authorize_payment: VoidPayment.v1",
                 "COMPLETED", "COMPENSATED"):
        assert text in drawing, text
    edges = drawing.splitlines()
    # Compensations run in reverse: void first, then release, then the saga is compensated.
    assert "    c_authorize_payment --> c_reserve_stock" in edges
    assert "    c_reserve_stock --> compensated" in edges
    # A payment declined undoes only the reservation; a capture failure starts with the void.
    assert '    s_authorize_payment -. "PaymentDeclined.v1" .-> c_reserve_stock' in edges
    assert '    s_capture_payment -. "PaymentFailed.v1" .-> c_authorize_payment' in edges
    assert '    s_capture_payment -- "PaymentCaptured.v1" --> completed' in edges
    # A timeout may have taken effect: it undoes its own step too.
    assert any(e.startswith("    s_authorize_payment -.") and e.endswith("-> c_authorize_payment")
               for e in edges)


def test_builders_without_annotations_are_named_after_the_function() -> None:
    step = Step("s", lambda d: reserve(d), success={"Ok.v1": None})
    described = SagaDefinition("x", [step]).describe()
    assert described["steps"][0]["command"] == "<lambda>"


@pytest.mark.parametrize("make", [
    lambda: SagaDefinition("empty", []),
    lambda: SagaDefinition("dup", [Step("a", reserve, success={"Ok.v1": None}),
                                   Step("a", reserve, success={"Ok.v1": None})]),
    lambda: Step("a", reserve, success={}),
    lambda: Step("a", reserve, success={"X.v1": None}, failure={"X.v1": None}),
    lambda: Step("a", reserve, success={"X.v1": None}, deadline_s=0),
    # A forwarded step's success never reaches the orchestrator: it cannot change the data.
    lambda: Step("a", reserve, success={"X.v1": lambda d, p: {"k": 1}}, forward=True),
    # The last step has nothing to forward.
    lambda: SagaDefinition("tail", [Step("a", reserve, success={"X.v1": None}),
                                    Step("b", reserve, success={"Y.v1": None}, forward=True)]),
])
def test_invalid_definitions_are_refused(make: Any) -> None:
    with pytest.raises(ValueError):
        make()


def test_steps_sent_together_end_at_the_first_that_does_not_forward() -> None:
    d = SagaDefinition("chain", [
        Step("a", reserve, success={"A.v1": None}, forward=True),
        Step("b", reserve, success={"B.v1": None}, forward=True),
        Step("c", reserve, success={"C.v1": None}),
        Step("d", reserve, success={"D.v1": None})])
    assert [d.chain_end(i) for i in range(4)] == [2, 2, 2, 3]
    assert [d.chain_head(i) for i in range(4)] == [0, 0, 0, 3]
    assert [d.chain_deadline_s(i) for i in range(4)] == [90, 60, 30, 30]
    described = d.describe()["steps"]
    assert [(s["sent_with"], s["chain_deadline_s"]) for s in described] == [
        (0, 90), (0, 60), (0, 30), (3, 30)]
    mermaid = d.to_mermaid()
    assert 's_a == "A.v1: its receiver sends the next" ==> s_b' in mermaid
    # One deadline for the three (30 s each), from the first; none of their own.
    assert 's_a -. "timed out: 90s, then 2 resends each waiting twice as long"' in mermaid
    assert "s_b -. " not in mermaid


def test_secret_keys_and_the_end_hook_are_part_of_the_definition() -> None:
    async def settle(session: Any, saga: Any, end: Any) -> None:
        return None

    saga = SagaDefinition("x", [Step("s", reserve, success={"Ok.v1": None})],
                          on_end=settle, secret_keys=iter(["card", "token"]))
    assert saga.secret_keys == ("card", "token")  # kept, not an exhausted iterator
    assert saga.on_end is settle
    assert SagaDefinition("y", [Step("s", reserve, success={"Ok.v1": None})]).on_end is None


def test_command_subjects_are_read_from_the_builders_annotations() -> None:
    def either(d: Data) -> AuthorizePayment | CapturePayment:
        return capture(d)

    assert command_subjects(definition().builders()) == [
        "inventory.commands.release_stock", "inventory.commands.reserve_stock",
        "payments.commands.authorize_payment", "payments.commands.capture_payment",
        "payments.commands.void_payment"]
    assert command_subjects([either]) == ["payments.commands.authorize_payment",
                                          "payments.commands.capture_payment"]


def test_a_builder_that_names_no_command_class_is_refused() -> None:
    def unannotated(d):  # type: ignore[no-untyped-def]
        return release(d)

    def not_a_command(d: Data) -> dict[str, Any]:
        return {}

    def partly(d: Data) -> ReleaseStock | None:
        return release(d)

    for builder in (unannotated, not_a_command, partly):
        with pytest.raises(ValueError, match="must be annotated"):
            command_subjects([builder])
