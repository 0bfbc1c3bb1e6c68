"""The coexistence routes: rendered from the switches, valid for Envoy, sticky by bucket."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from gateway_test_support import Signer
from mercato.gateway import GatewayConfig, prepare
from mercato.gateway.control import coexistence, write_static
from mercato.gateway.envoy import validate_generated
from mercato.gateway.routes import load_routes
from mercato.migration import flags
from mercato.migration.capabilities import capability
from mercato.migration.flags import Share
from mercato.migration.routes import (
    ACL_CLUSTER,
    CART,
    LEGACY_CLUSTER,
    PRIMARY,
    SHADOW,
    capability_routes,
)


def _cfg(tmp_path: Path) -> GatewayConfig:
    return GatewayConfig(envoy_dir=tmp_path / "envoy", logs_dir=tmp_path / "logs",
                         legacy_port=7400, acl_port=7401,
                         flags_file=tmp_path / "migration" / "flags.json")


def _routes(envoy_dir: Path) -> list[dict[str, Any]]:
    doc = yaml.safe_load((envoy_dir / "rds.yaml").read_text())
    return list(doc["resources"][0]["virtual_hosts"][0]["routes"])


def _target(route: dict[str, Any]) -> tuple[str, str | None, str | None]:
    headers = {h["header"]["key"]: h["header"]["value"]
               for h in route.get("request_headers_to_add", [])}
    return route["route"]["cluster"], headers.get(PRIMARY), headers.get(SHADOW)


def test_all_legacy_sends_every_legacy_path_to_the_monolith() -> None:
    routes = capability_routes(capability("catalog"), Share("catalog"), {})
    assert [r["name"] for r in routes] == ["catalog /shop/products/* legacy",
                                           "catalog /shop/categories/* legacy"]
    assert all(_target(r)[0] == LEGACY_CLUSTER for r in routes)
    # A client cannot pick a side by sending the ACL's headers to the monolith's route.
    assert PRIMARY in routes[0]["request_headers_to_remove"]
    assert routes[0]["response_headers_to_add"][0]["header"] == {"key": "mercato-served-by",
                                                                 "value": "legacy"}


def test_a_share_routes_low_buckets_to_the_services_through_the_acl() -> None:
    routes = capability_routes(capability("catalog"), Share("catalog", percent=30), {})[:2]
    shifted, rest = routes
    assert shifted["match"]["headers"] == [{"name": "mercato-bucket",
                                            "range_match": {"start": 0, "end": 30}}]
    assert _target(shifted) == (ACL_CLUSTER, "services", "0")
    assert "headers" not in rest["match"] and _target(rest)[0] == LEGACY_CLUSTER


def test_shadow_reads_go_to_the_acl_with_the_primary_side_named() -> None:
    routes = capability_routes(capability("catalog"), Share("catalog", percent=10, shadow=25),
                               {})[:4]
    names = [r["name"].rsplit(" ", 1)[-1] for r in routes]
    assert names == ["shadow", "shadow", "shifted", "legacy"]
    shifted_shadow, shadow, _, _ = routes
    assert _target(shifted_shadow) == (ACL_CLUSTER, "services", "1")
    assert _target(shadow) == (ACL_CLUSTER, "legacy", "1")
    fraction = shadow["match"]["runtime_fraction"]["default_value"]
    assert fraction == {"numerator": 25, "denominator": "HUNDRED"}
    # Only reads: a shadowed write would do its work twice.
    assert shadow["match"]["headers"][0]["string_match"]["safe_regex"]["regex"] == "^(GET|HEAD)$"


def test_writes_are_never_shadowed() -> None:
    writes = replace(capability("catalog"), shadow_reads=False)
    routes = capability_routes(writes, Share("catalog", percent=50, shadow=50), {})
    assert all(_target(r)[2] != "1" for r in routes if r["route"]["cluster"] == ACL_CLUSTER)
    assert len(routes) == 4  # shifted and the rest, for each of the two paths


def test_identity_is_translated_so_it_shifts_and_shadows() -> None:
    routes = capability_routes(capability("identity"), Share("identity", percent=50,
                                                             shadow=50), {})
    assert (ACL_CLUSTER, "services", "0") in {_target(r) for r in routes}
    assert (ACL_CLUSTER, "legacy", "1") in {_target(r) for r in routes}


@pytest.mark.parametrize("name", ["cart", "history", "checkout"])
def test_a_capability_without_a_translation_stays_on_the_monolith(name: str) -> None:
    untranslated = replace(capability(name), translated=False)
    routes = capability_routes(untranslated, Share(name, percent=50, shadow=50,
                                                   finished=True), {})
    assert {_target(r)[0] for r in routes} == {LEGACY_CLUSTER}


@pytest.mark.parametrize("name", ["cart", "history", "checkout"])
def test_cart_checkout_and_history_are_translated_so_they_shift(name: str) -> None:
    routes = capability_routes(capability(name), Share(name, percent=50), {})
    assert (ACL_CLUSTER, "services", "0") in {_target(r) for r in routes}


def _cart_header(route: dict[str, Any]) -> str | None:
    return {h["header"]["key"]: h["header"]["value"]
            for h in route.get("request_headers_to_add", [])}.get(CART)


def test_checkout_of_customers_whose_cart_moved_goes_through_the_acl_to_the_monolith() -> None:
    routes = capability_routes(capability("checkout"), Share("checkout", percent=20), {},
                               cart=70)
    names = [r["name"] for r in routes]
    assert names == ["checkout /shop/checkout shifted", "checkout /shop/checkout cart on services",
                     "checkout /shop/checkout legacy"]
    shifted, bridge, rest = routes
    assert _target(shifted) == (ACL_CLUSTER, "services", "0") and _cart_header(shifted) is None
    # Cart bucket range minus checkout range: [20, 70).
    assert bridge["match"]["headers"] == [{"name": "mercato-bucket",
                                           "range_match": {"start": 20, "end": 70}}]
    assert _target(bridge) == (ACL_CLUSTER, "legacy", "0")
    assert _cart_header(bridge) == "services"
    assert _target(rest)[0] == LEGACY_CLUSTER and CART in rest["request_headers_to_remove"]
    # A client cannot claim a services cart on the routes that do not give it one.
    assert CART in shifted["request_headers_to_remove"]


def test_with_every_cart_on_the_services_every_legacy_checkout_is_bridged() -> None:
    routes = capability_routes(capability("checkout"), Share("checkout", percent=50), {},
                               cart=100)
    assert [r["name"] for r in routes] == ["checkout /shop/checkout shifted",
                                           "checkout /shop/checkout legacy, cart on services"]
    assert "headers" not in routes[1]["match"]  # also requests without a bucket
    assert _target(routes[1]) == (ACL_CLUSTER, "legacy", "0")
    assert _cart_header(routes[1]) == "services"


@pytest.mark.parametrize(("checkout", "cart"), [(50, 50), (60, 40), (100, 100), (0, 0)])
def test_no_bridge_unless_the_cart_is_ahead_of_checkout(checkout: int, cart: int) -> None:
    routes = capability_routes(capability("checkout"), Share("checkout", percent=checkout),
                               {}, cart=cart)
    assert all(_cart_header(r) is None for r in routes)
    # Only checkout has a bridge: the cart's own routes ignore it.
    cart_routes = capability_routes(capability("cart"), Share("cart", percent=cart), {},
                                    cart=100)
    assert all(_cart_header(r) is None for r in cart_routes)


@pytest.mark.parametrize("share", [Share("catalog", percent=100), Share("catalog", finished=True)])
def test_at_100_percent_everyone_goes_to_the_services(share: Share) -> None:
    routes = capability_routes(capability("catalog"), share, {})
    assert {_target(r) for r in routes} == {(ACL_CLUSTER, "services", "0")}


def test_files_with_the_monolith_and_every_kind_of_share_validate(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    assert cfg.flags_file is not None
    flags.write_flags(cfg.flags_file, {"migration.catalog.percent": 10,
                                       "migration.catalog.shadow": 20,
                                       "migration.identity.percent": 100,
                                       "migration.checkout.percent": 50,
                                       "migration.checkout.shadow": 50,
                                       "migration.history.finished": True,
                                       "migration.cart.percent": 80})
    prepare(cfg)
    result = validate_generated(cfg.envoy_dir)
    assert result.ok, result.output
    # With keys, the routes are in rds.yaml: the legacy ones with the token check off.
    write_static(cfg, load_routes(), Signer().jwks(), coexist=coexistence(cfg))
    result = validate_generated(cfg.envoy_dir)
    assert result.ok, result.output
    assert "Deprecated field" not in result.output
    routes = _routes(cfg.envoy_dir)
    assert "checkout /shop/checkout cart on services" in [r["name"] for r in routes]
    legacy = [r for r in routes if r["name"].startswith(("catalog ", "legacy "))]
    assert legacy and all(r["typed_per_filter_config"]["envoy.filters.http.jwt_authn"]
                          ["disabled"] for r in legacy)
    cds = yaml.safe_load((cfg.envoy_dir / "cds.yaml").read_text())
    assert {LEGACY_CLUSTER, ACL_CLUSTER} <= {c["name"] for c in cds["resources"]}
    applied = (cfg.envoy_dir / "migration-applied.json").read_text()
    assert '"catalog": {"finished": false, "percent": 10, "shadow": 20}' in applied
    # And the last step: every client of the capability to the ACL.
    flags.write_flags(cfg.flags_file, {"migration.catalog.finished": True,
                                       "migration.catalog.percent": 100,
                                       "migration.cart.percent": 100,
                                       "migration.checkout.percent": 50})
    write_static(cfg, load_routes(), Signer().jwks(), coexist=coexistence(cfg))
    result = validate_generated(cfg.envoy_dir)
    assert result.ok, result.output
    names = [r["name"] for r in _routes(cfg.envoy_dir)]
    assert "catalog /shop/products/* services" in names
    assert "checkout /shop/checkout legacy, cart on services" in names


def test_a_changed_share_rewrites_only_the_routes(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    assert cfg.flags_file is not None
    prepare(cfg)
    table, keys = load_routes(), Signer().jwks()
    write_static(cfg, table, keys, coexist=coexistence(cfg))
    flags.write_flags(cfg.flags_file, {"migration.catalog.percent": 40})
    changed = write_static(cfg, table, keys, coexist=coexistence(cfg))
    assert [p.name for p in changed] == ["rds.yaml"]
    shifted = [r for r in _routes(cfg.envoy_dir) if r["name"].endswith("shifted")]
    assert shifted and shifted[0]["match"]["headers"][0]["range_match"]["end"] == 40


def test_without_a_monolith_nothing_changes(tmp_path: Path) -> None:
    cfg = GatewayConfig(envoy_dir=tmp_path / "envoy", logs_dir=tmp_path / "logs")
    assert coexistence(cfg) is None
    prepare(cfg)
    assert not any(r["name"].startswith("legacy")
                   for r in yaml.safe_load((cfg.envoy_dir / "lds.yaml").read_text())
                   ["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
                   ["route_config"]["virtual_hosts"][0]["routes"])
    assert not (cfg.envoy_dir / "migration-applied.json").exists()


class _UnreachableRegistry:
    async def instances(self) -> list[Any]:
        raise ConnectionError("the broker is down")


async def test_a_rollback_reaches_the_edge_while_the_registry_is_unreachable(
        tmp_path: Path) -> None:
    from mercato.gateway.control import _Seen, _sync

    cfg = _cfg(tmp_path)
    assert cfg.flags_file is not None
    flags.write_flags(cfg.flags_file, {"migration.catalog.percent": 50})
    prepare(cfg)
    seen = _Seen(rendered_coexistence=coexistence(cfg))
    flags.write_flags(cfg.flags_file, {"migration.catalog.percent": 0})
    await _sync(cfg, load_routes(), _UnreachableRegistry(), seen)  # type: ignore[arg-type]
    names = [r["name"] for r in _routes_inline(cfg.envoy_dir)]
    assert "catalog /shop/products/* shifted" not in names
    assert "catalog /shop/products/* legacy" in names


def _routes_inline(envoy_dir: Path) -> list[dict[str, Any]]:
    lds = yaml.safe_load((envoy_dir / "lds.yaml").read_text())
    hcm = lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return list(hcm["route_config"]["virtual_hosts"][0]["routes"])
