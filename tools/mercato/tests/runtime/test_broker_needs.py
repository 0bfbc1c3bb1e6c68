"""The runtime's table of what each service does on the broker matches the services' own
Messaging declarations: a new consumer, stream or command cannot silently lack permission."""

from __future__ import annotations

import importlib

import pytest
from chassis.broker_permissions import BrokerNeeds, service_permissions, subject_matches
from contracts.base import Command
from contracts.registry import ALL
from mercato.runtime.broker import SERVICE_BROKER_NEEDS
from mercato.runtime.services import SERVICES


def declared_needs(service: str, monkeypatch: pytest.MonkeyPatch) -> BrokerNeeds:
    """Build the service's app the way the runtime starts it and read what it declared."""
    prefix = service.upper() + "_"
    monkeypatch.setenv(prefix + "DATABASE_URL",
                       f"postgresql+asyncpg://{service}:pw@127.0.0.1:1/{service}")
    monkeypatch.setenv(prefix + "NATS_URL", "")
    app = importlib.import_module(f"{service}.app").create_app()
    runtime = app.state.ctx.messaging
    return BrokerNeeds.of(runtime.spec if runtime is not None else None)


@pytest.mark.parametrize("service", SERVICES)
def test_the_table_is_what_the_service_declares(service: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert SERVICE_BROKER_NEEDS[service] == declared_needs(service, monkeypatch), (
        f"update SERVICE_BROKER_NEEDS[{service!r}] in mercato/runtime/broker.py")


def test_orders_may_publish_the_commands_its_sagas_build_and_no_other() -> None:
    from orders.service_layer.saga import COMMANDS_SENT

    allowed = service_permissions("orders", SERVICE_BROKER_NEEDS["orders"]).publish
    commands = {c.subject() for c in ALL if issubclass(c, Command)}
    publishable = {s for s in commands if any(subject_matches(p, s) for p in allowed)}
    assert publishable == set(COMMANDS_SENT)
    # What the approval's event does instead (ADR 0054): a command orders no longer sends is
    # one it may not send (ADR 0056).
    assert not publishable & {"inventory.commands.commit_reservation",
                              "shipping.commands.release_shipment"}
    assert not [p for p in allowed if ".commands." in p and p.endswith(">")]


# Commands a saga step's receiver sends on the orchestrator's behalf (ADR 0053): exactly
# these, each one subject, never a wildcard.
FORWARDED = {("payments", "shipping.commands.create_shipment")}


def test_a_service_publishes_only_its_own_events() -> None:
    for service, needs in SERVICE_BROKER_NEEDS.items():
        for pattern in needs.publishes:
            owner, kind = pattern.split(".")[:2]
            assert (owner, kind) == (service, "events") or (service, kind) == (
                "orders", "commands") or (service, pattern) in FORWARDED, (service, pattern)
