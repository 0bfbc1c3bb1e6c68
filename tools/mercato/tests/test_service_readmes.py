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
    assert "CancelShipment.v1" in orders.commands and "OrderApproved.v1" in orders.events
    # The approval's event releases the shipment (ADR 0054): orders may not send it (ADR 0056).
    assert "ReleaseShipment.v1" not in orders.commands
    assert not any(t.startswith("Stock") for t in orders.events)


def test_a_stale_block_is_replaced_and_a_missing_one_added() -> None:
    block = table(ServiceMessaging((("c", "S", ("A.v1",)),), ("E.v1",), ()))
    fresh = rendered("# x\n\n## Messaging\nprose\n", block)
    assert fresh == f"# x\n\n## Messaging\n{block}\n\nprose\n"
    stale = fresh.replace("A.v1", "Old.v1")
    assert rendered(stale, block) == fresh
    assert rendered("# y\n", block) == f"# y\n\n## Messaging\n{block}\n"


def test_the_deploy_sizing_table_is_computed_from_the_reference_report() -> None:
    from mercato.deploy import sizing
    from mercato.runtime.services import repo_root

    text = (repo_root() / "docs" / "deploy.md").read_text()
    report = sizing.load(repo_root() / "bench" / "reference" / "orders.json")
    assert sizing.rendered(text, sizing.table(report)) == text, "run `mercato docs render`"


def test_sizing_grows_with_the_rate_and_names_postgres_when_one_primary_is_too_small() -> None:
    from mercato.deploy import sizing

    per_order = {"orders": 0.02, "inventory": 0.01, "postgres": 0.016, "nats": 0.007}
    small, large = sizing.plan(per_order, 10), sizing.plan(per_order, 1000)
    assert small.instances == {"inventory": 2, "orders": 2}  # at least two for the PDB
    assert large.instances["orders"] == 34  # 1000 * 20 ms / 0.6 = 33.3 cores, one each
    assert small.breaks_first.startswith("nothing: orders")
    assert large.breaks_first.startswith("PostgreSQL: 27 cores")
