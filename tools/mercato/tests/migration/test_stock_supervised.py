"""The stock split as the supervisor starts it with `--with legacy` (ADR 0034): beside the
sync when catalog and inventory run, with the sync's identity (which the inventory trusts
as ``sync``) and the migration's flag file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from chassis.registry_keys import public_key_of
from mercato.migration.flags import flag_file
from mercato.runtime.paths import Home, free_port
from mercato.runtime.supervisor import Spec, Supervisor


def _supervisor(tmp_path: Path, services: dict[str, str]) -> tuple[Supervisor, dict[str, Spec]]:
    sup = Supervisor(Home(tmp_path), services=services, scale={}, with_=["legacy"])
    sup.legacy_port, sup.acl_port = free_port(), free_port()
    sup.ports = dataclasses.replace(sup.ports, edge=free_port())
    sup.db_urls["legacy"] = "postgresql+asyncpg://legacy@127.0.0.1:1/legacy"
    added: dict[str, Spec] = {}

    def add(spec: Spec) -> Any:
        added[spec.name] = spec

    sup.add = add  # type: ignore[method-assign]
    return sup, added


def test_the_split_runs_beside_the_sync_with_an_identity_inventory_trusts(
        tmp_path: Path) -> None:
    sup, added = _supervisor(tmp_path, {"catalog": "catalog", "inventory": "inventory"})
    assert sup.start_optional() == ["legacy", "acl", "sync", "stock"]
    spec = added["stock"]
    port = spec.port()
    argv = spec.argv(port)
    assert argv[1:3] == ["-m", "mercato.migration.stock"]
    assert argv[argv.index("--inventory-url") + 1] == "http://inventory"
    assert argv[argv.index("--legacy-dsn") + 1] == sup.db_urls["legacy"]
    assert argv[argv.index("--flags") + 1] == str(flag_file(Home(tmp_path).root))
    assert spec.env is not None
    key = spec.env(port)["SYNC_SIGNING_KEY"]
    sup.db_urls["inventory"] = "postgresql+asyncpg://i@127.0.0.1:1/i"
    sup.nats_urls["inventory"] = sup.nats.url
    inventory = sup._service_spec("inventory", "inventory", "inventory-1")
    assert inventory.env is not None
    trusted = json.loads(inventory.env(1)["INVENTORY_REGISTRY_TRUSTED_KEYS"])
    assert trusted["sync"] == public_key_of(key)
    assert sup.urls()["stock"] == f"http://127.0.0.1:{port}"


def test_no_split_without_the_inventory(tmp_path: Path) -> None:
    sup, added = _supervisor(tmp_path, {"catalog": "catalog"})
    assert sup.start_optional() == ["legacy", "acl", "sync"]
    assert "stock" not in added and "stock" not in sup.urls()
