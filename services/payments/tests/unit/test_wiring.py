import subprocess
import sys

import pytest
from chassis.messaging.envelope import Envelope, PoisonMessage
from contracts.payments import v2
from contracts.payments.v1 import (
    AuthorizePayment,
    CapturePayment,
    ChargePayment,
    RefundPayment,
    VoidPayment,
)
from payments.app import messaging
from payments.entrypoints.consumers import parse
from payments.settings import PaymentsSettings
from simulators.payment_provider.__main__ import config_from_env


def test_settings_come_from_payments_prefixed_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = PaymentsSettings()
    assert defaults.provider_url == "http://127.0.0.1:8790"
    assert defaults.api_prefix == "/api/payments"
    monkeypatch.setenv("PAYMENTS_PROVIDER_URL", "http://pay.example:9000")
    monkeypatch.setenv("PAYMENTS_PROVIDER_TIMEOUT_S", "1.5")
    monkeypatch.setenv("PAYMENTS_PROVIDER_PORT", "9999")  # the provider's own: ignored here
    s = PaymentsSettings()
    assert (s.provider_url, s.provider_timeout_s) == ("http://pay.example:9000", 1.5)


def test_placeholder_database_password_is_refused_outside_development() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        PaymentsSettings(environment="production",
                         database_url="postgresql+asyncpg://payments:changeme@db/payments")


def test_messaging_declares_streams_and_handles_every_command() -> None:
    spec = messaging(PaymentsSettings())
    assert spec.outbox is True
    assert {s.name: (s.subjects, s.work_queue) for s in spec.streams} == {
        "PAYMENTS_EVENTS": (["payments.events.>"], False),
        "PAYMENTS_COMMANDS": (["payments.commands.>"], True)}
    [commands] = spec.consumers
    assert (commands.name, commands.stream, commands.subjects) == (
        "payments-commands", "PAYMENTS_COMMANDS", ["payments.commands.>"])
    # v1 AuthorizePayment (a card number) is still handled: one may be in flight.
    assert set(commands.handlers) == {c.message_type() for c in
                                      (v2.AuthorizePayment, AuthorizePayment, CapturePayment,
                                       ChargePayment, VoidPayment, RefundPayment)}


def test_parse_refuses_bad_commands_without_echoing_the_card() -> None:
    env = Envelope.new(AuthorizePayment.subject(), AuthorizePayment.message_type(),
                       {"payment_id": "p1", "order_id": "o1", "amount": "1",
                        "currency": "krw", "card_number": "4242424242424242"})
    with pytest.raises(PoisonMessage) as err:
        parse(AuthorizePayment, env)
    assert "4242" not in str(err.value)
    long_id = Envelope.new(CapturePayment.subject(), CapturePayment.message_type(),
                           {"payment_id": "x" * 201, "order_id": "o1"})
    with pytest.raises(PoisonMessage):
        parse(CapturePayment, long_id)


def test_provider_config_from_environment() -> None:
    c = config_from_env({"PAYMENTS_PROVIDER_PORT": "9100", "PAYMENTS_PROVIDER_DATA_DIR": "/x",
                         "PAYMENTS_PROVIDER_LATENCY_MS": "5",
                         "PAYMENTS_PROVIDER_FAILURE_RATE": "0.25"})
    assert (c.port, str(c.data_dir), c.latency_ms, c.failure_rate) == (9100, "/x", 5, 0.25)
    with pytest.raises(ValueError):
        config_from_env({"PAYMENTS_PROVIDER_FAILURE_RATE": "2"})


def test_the_provider_plays_a_third_party_and_imports_no_chassis() -> None:
    code = ("import sys, simulators.payment_provider.__main__; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('chassis', 'contracts')]")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_payment_methods_are_never_changed_or_removed() -> None:
    """Orders keeps the methods its orders named, for good (ADR 0041): a route or a statement
    that changes or removes one must come with an event that orders' replica consumes."""
    import ast
    import pathlib

    import payments
    from payments.app import create_app

    app = create_app(PaymentsSettings(nats_url="", register_instance=False))
    verbs = {verb for path, operations in app.openapi()["paths"].items()
             if "payment-methods" in path for verb in operations}
    assert verbs == {"get", "post"}, verbs
    calls: set[str] = set()
    for source in pathlib.Path(payments.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.args and isinstance(node.args[0], ast.Name) and \
                    node.args[0].id == "payment_methods":
                calls.add(node.func.id)
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = " ".join(node.value.lower().split())
                assert "update payment_methods" not in text, source
                assert "delete from payment_methods" not in text, source
    assert "insert" in calls and not calls & {"update", "delete"}, calls
