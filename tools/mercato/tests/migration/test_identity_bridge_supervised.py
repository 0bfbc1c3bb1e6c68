"""The identity bridge as the supervisor wires it with `--with legacy` (ADR 0032): the
monolith trusts identity's keys (through the edge), and the ACL gets a signed service
identity of its own that identity (and only through the runtime's key list) trusts as
``acl``."""

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


def test_the_monolith_trusts_identity_and_identity_trusts_the_acl(tmp_path: Path) -> None:
    sup, added = _supervisor(tmp_path, {"identity": "identity", "orders": "orders"})
    sup.start_optional()
    legacy = added["legacy"]
    assert legacy.env is not None
    env = legacy.env(sup.legacy_port)
    assert env["LEGACY_JWKS_URL"] == f"http://127.0.0.1:{sup.ports.edge}/.well-known/jwks.json"
    assert (env["LEGACY_JWT_ISSUER"], env["LEGACY_JWT_AUDIENCE"]) == ("mercato-identity",
                                                                       "mercato")
    acl = added["acl"]
    assert acl.env is not None
    key = acl.env(sup.acl_port)["ACL_SIGNING_KEY"]
    sup.db_urls.update(identity="postgresql+asyncpg://i@127.0.0.1:1/i")
    sup.nats_urls.update(identity=sup.nats.url)
    identity = sup._service_spec("identity", "identity", "identity-1")
    assert identity.env is not None
    trusted = json.loads(identity.env(1)["IDENTITY_REGISTRY_TRUSTED_KEYS"])
    assert trusted["acl"] == public_key_of(key)


def test_no_bridge_without_identity(tmp_path: Path) -> None:
    sup, added = _supervisor(tmp_path, {"orders": "orders"})
    sup.start_optional()
    assert added["legacy"].env is not None and added["acl"].env is not None
    assert "LEGACY_JWKS_URL" not in added["legacy"].env(sup.legacy_port)
    assert added["acl"].env(sup.acl_port) == {}
    assert "acl" not in sup._callers()
