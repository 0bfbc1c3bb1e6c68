from datetime import UTC, datetime
from decimal import Decimal

import pytest
from payments.domain.model import (
    AUTHORIZE,
    AUTHORIZED,
    CAPTURE,
    CAPTURED,
    DECLINED,
    REFUND,
    REFUNDED,
    REQUESTED,
    VOIDED,
    VOIDED_BEFORE_AUTHORIZE,
    InvalidTransition,
    LedgerEntry,
    Payment,
    PaymentError,
    PaymentMethod,
    balance,
    money_text,
    parse_amount,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def requested(amount: str = "15000") -> Payment:
    return Payment.request("p1", "o1", amount, "KRW", card_last4="4242",
                           payment_method_id="pm_1", now=NOW)


def test_a_request_keeps_the_payment_method_and_last_four_digits() -> None:
    p = requested()
    assert (p.status, p.amount, p.currency, p.card_last4, p.payment_method_id) == (
        REQUESTED, Decimal(15000), "KRW", "4242", "pm_1")


def test_a_payment_method_is_usable_by_its_owner_only() -> None:
    m = PaymentMethod("pm_1", "alice", "4242", "visa")
    assert m.usable_by("alice")
    assert not m.usable_by("bob") and not m.usable_by(None)


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "NaN", "Infinity", "1.001", "1e13", ""])
def test_amounts_must_be_positive_finite_and_at_most_cents(bad: str) -> None:
    with pytest.raises(PaymentError):
        parse_amount(bad)
    assert parse_amount("12.50") == Decimal("12.50")


def test_authorize_capture_refund_path_writes_one_entry_per_step() -> None:
    p = requested()
    entries = [p.authorized("ch_1", now=NOW), p.captured(now=NOW), p.refunded("rma", now=NOW)]
    assert [e.kind for e in entries] == [AUTHORIZE, CAPTURE, REFUND]
    assert (p.status, p.provider_ref, p.reason) == (REFUNDED, "ch_1", "rma")
    b = balance(entries)
    assert (b.held, b.net_captured) == (0, 0)


def test_authorize_then_void_releases_the_hold() -> None:
    p = requested()
    entries = [p.authorized("ch_1", now=NOW), p.voided("saga_failed", now=NOW)]
    assert p.status == VOIDED
    b = balance(entries)
    assert (b.authorized, b.voided, b.held, b.captured) == (15000, 15000, 0, 0)


def test_declined_payment_has_no_entries_and_moves_nowhere() -> None:
    p = requested()
    p.declined("card_declined", provider_ref="ch_1", now=NOW)
    assert (p.status, p.reason) == (DECLINED, "card_declined")
    for op in (lambda: p.captured(now=NOW), lambda: p.voided(None, now=NOW),
               lambda: p.refunded(None, now=NOW), lambda: p.authorized("x", now=NOW)):
        with pytest.raises(InvalidTransition) as err:
            op()
        assert err.value.reason == "payment_declined"
    assert p.status == DECLINED


@pytest.mark.parametrize(("setup", "operation"), [
    ([], "capture"), ([], "refund"), (["authorize"], "refund"),
    (["authorize", "capture"], "void"), (["authorize", "capture"], "capture"),
    (["authorize", "void"], "capture"), (["authorize", "capture", "refund"], "refund"),
])
def test_invalid_transitions_are_refused_without_change(setup: list[str], operation: str) -> None:
    p = requested()
    steps = {"authorize": lambda: p.authorized("ch", now=NOW), "capture": lambda: p.captured(now=NOW),
             "void": lambda: p.voided(None, now=NOW), "refund": lambda: p.refunded(None, now=NOW)}
    for step in setup:
        steps[step]()
    before = p.status
    with pytest.raises(InvalidTransition):
        steps[operation]()
    assert p.status == before


def test_void_tombstone_has_no_money() -> None:
    t = Payment.void_tombstone("p1", "o1", reason=None, now=NOW)
    assert (t.status, t.amount, t.reason) == (VOIDED, None, VOIDED_BEFORE_AUTHORIZE)
    with pytest.raises(InvalidTransition):
        t.captured(now=NOW)


def entry(kind: str, amount: str = "100", payment_id: str = "p1") -> LedgerEntry:
    return LedgerEntry(payment_id, "o1", kind, Decimal(amount), "KRW", NOW)


def test_ledger_refuses_a_second_capture_or_repeated_entry() -> None:
    with pytest.raises(PaymentError, match="two capture"):
        balance([entry("authorize"), entry("capture"), entry("capture")])
    with pytest.raises(PaymentError, match="more than one capture"):
        balance([entry("authorize"), entry("capture"), entry("authorize", payment_id="p2"),
                 entry("capture", payment_id="p2")])


def test_ledger_refuses_taking_more_than_was_held_or_giving_back_more_than_taken() -> None:
    with pytest.raises(PaymentError):
        balance([entry("capture")])
    with pytest.raises(PaymentError):
        balance([entry("authorize"), entry("refund")])
    with pytest.raises(PaymentError):
        balance([entry("authorize"), entry("void"), entry("capture")])
    with pytest.raises(PaymentError):
        balance([entry("bogus")])


@pytest.mark.parametrize("path", [[], ["authorize"], ["authorize", "void"],
                                  ["authorize", "capture"], ["authorize", "capture", "refund"]])
def test_captured_minus_refunded_is_zero_or_the_total(path: list[str]) -> None:
    p = requested("99.90")
    ops = {"authorize": lambda: p.authorized("ch", now=NOW), "capture": lambda: p.captured(now=NOW),
           "void": lambda: p.voided(None, now=NOW), "refund": lambda: p.refunded(None, now=NOW)}
    b = balance([ops[step]() for step in path])
    assert b.net_captured in (Decimal(0), Decimal("99.90"))
    assert b.held in (Decimal(0), Decimal("99.90"))
    assert p.status == {0: REQUESTED, 1: AUTHORIZED, 2: VOIDED if "void" in path else CAPTURED,
                        3: REFUNDED}[len(path)]


@pytest.mark.parametrize(("raw", "text"), [("15000", "15000"), ("15000.00", "15000"),
                                           ("99.5", "99.50"), ("0.01", "0.01"), ("0", "0")])
def test_money_has_one_spelling(raw: str, text: str) -> None:
    assert money_text(Decimal(raw)) == text
