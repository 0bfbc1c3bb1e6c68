"""Each service README's messaging table is what the service declares (ADR: docs that are made
from the code cannot drift; `mercato docs render` rewrites them)."""

from __future__ import annotations

import pytest
from mercato.docs.readmes import (
    BEGIN,
    END,
    ServiceMessaging,
    declared_messaging,
    readme_path,
    rendered,
    table,
)
from mercato.runtime.services import SERVICES


@pytest.mark.parametrize("service", SERVICES)
def test_the_readme_lists_what_the_service_consumes_and_publishes(service: str) -> None:
    text = readme_path(service).read_text()
    assert BEGIN in text and END in text, f"run `mercato docs render` ({service})"
    generated = table(ServiceMessaging.of(declared_messaging(service)))
    assert rendered(text, generated) == text, f"stale: run `mercato docs render` ({service})"


def test_the_table_names_every_handled_type_and_only_publishable_contracts() -> None:
    inventory = ServiceMessaging.of(declared_messaging("inventory"))
    [commands] = [types for name, _, types in inventory.consumers
                  if name == "inventory-commands"]
    assert "RestockReservation.v1" in commands  # the README had dropped it once
    assert "StockReserved.v1" in inventory.events and not inventory.commands
    orders = ServiceMessaging.of(declared_messaging("orders"))
    assert "ReleaseShipment.v1" in orders.commands and "OrderApproved.v1" in orders.events
    assert not any(t.startswith("Stock") for t in orders.events)


def test_a_stale_block_is_replaced_and_a_missing_one_added() -> None:
    block = table(ServiceMessaging((("c", "S", ("A.v1",)),), ("E.v1",), ()))
    fresh = rendered("# x\n\n## Messaging\nprose\n", block)
    assert fresh == f"# x\n\n## Messaging\n{block}\n\nprose\n"
    stale = fresh.replace("A.v1", "Old.v1")
    assert rendered(stale, block) == fresh
    assert rendered("# y\n", block) == f"# y\n\n## Messaging\n{block}\n"
