"""The sync as the supervisor starts it with `--with legacy`: beside the ACL when catalog
runs, with its own identity key, which catalog (and only through the runtime's key list)
trusts as ``sync``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from chassis.registry_keys import public_key_of
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


def test_the_sync_runs_beside_the_acl_with_an_identity_catalog_trusts(tmp_path: Path) -> None:
    sup, added = _supervisor(tmp_path, {"catalog": "catalog", "orders": "orders"})
    assert sup.start_optional() == ["legacy", "acl", "sync"]
    spec = added["sync"]
    port = spec.port()
    argv = spec.argv(port)
    assert argv[1:3] == ["-m", "mercato.migration.sync"]
    assert argv[argv.index("--catalog-url") + 1] == "http://catalog"
    assert argv[argv.index("--legacy-dsn") + 1] == sup.db_urls["legacy"]
    assert "--identity-url" not in argv  # no identity running: catalog only
    assert spec.env is not None
    env = spec.env(port)
    key = env["SYNC_SIGNING_KEY"]
    sup.db_urls.update(catalog="postgresql+asyncpg://c@127.0.0.1:1/c",
                       orders="postgresql+asyncpg://o@127.0.0.1:1/o")
    sup.nats_urls.update(catalog=sup.nats.url, orders=sup.nats.url)
    catalog = sup._service_spec("catalog", "catalog", "catalog-1")
    assert catalog.env is not None
    trusted = json.loads(catalog.env(1)["CATALOG_REGISTRY_TRUSTED_KEYS"])
    assert trusted["sync"] == public_key_of(key)
    # The shop's catalog is the monolith's (backfilled), not the demo one.
    assert catalog.env(1)["CATALOG_SEED_DEMO"] == "false"
    assert "urls" not in env and sup.urls()["sync"] == f"http://127.0.0.1:{port}"


def test_no_demo_catalog_change_without_the_monolith(tmp_path: Path) -> None:
    sup = Supervisor(Home(tmp_path), services={"catalog": "catalog"}, scale={})
    sup.db_urls["catalog"] = "postgresql+asyncpg://c@127.0.0.1:1/c"
    sup.nats_urls["catalog"] = sup.nats.url
    env = sup._service_spec("catalog", "catalog", "catalog-1").env
    assert env is not None and "CATALOG_SEED_DEMO" not in env(1)


def test_no_sync_without_catalog(tmp_path: Path) -> None:
    sup, added = _supervisor(tmp_path, {"orders": "orders"})
    assert sup.start_optional() == ["legacy", "acl"]
    assert "sync" not in added and "sync" not in sup._callers()


def test_the_sync_keeps_identity_in_step_when_identity_runs(tmp_path: Path) -> None:
    sup, added = _supervisor(tmp_path, {"catalog": "catalog", "identity": "identity"})
    assert sup.start_optional() == ["legacy", "acl", "sync"]
    argv = added["sync"].argv(added["sync"].port())
    assert argv[argv.index("--identity-url") + 1] == "http://identity"
    assert "sync" in sup._callers()  # identity trusts it as it trusts the services
