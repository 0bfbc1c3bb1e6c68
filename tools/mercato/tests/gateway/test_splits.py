"""Releases' traffic splits: a ``<service>-next`` cluster, weighted routes over RDS, files
that Envoy accepts, and the control plane writing them as the splits change."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from chassis.registry import Instance
from gateway_test_support import Signer, wait_for
from mercato.gateway import GatewayConfig, Split, TrafficSplits, prepare, render, run_control_plane
from mercato.gateway.control import write_endpoints, write_static
from mercato.gateway.envoy import validate_generated
from mercato.gateway.routes import load_routes
from test_control_plane import FakeRegistry, _async


def _instance(service: str, iid: str, port: int) -> Instance:
    now = time.time()
    return Instance(service=service, instance_id=iid, host="127.0.0.1", port=port,
                    pid=port, started_at=now, heartbeat_at=now)


OLD, NEW = _instance("catalog", "catalog-1", 7001), _instance("catalog", "catalog-r1-1", 7002)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _ports(envoy_dir: Path, cluster: str) -> list[int]:
    (cla,) = _load(render.eds_file(envoy_dir, cluster))["resources"]
    assert cla["cluster_name"] == cluster
    return [e["endpoint"]["address"]["socket_address"]["port_value"]
            for group in cla["endpoints"] for e in group["lb_endpoints"]]


def _catalog_actions(envoy_dir: Path) -> list[dict[str, Any]]:
    (routes,) = _load(render.rds_file(envoy_dir))["resources"]
    return [r["route"] for r in routes["virtual_hosts"][0]["routes"]
            if "route" in r and r["name"].startswith("/api/catalog")]


def test_a_split_renders_a_next_cluster_and_weighted_routes(tmp_path: Path) -> None:
    cfg = GatewayConfig(envoy_dir=tmp_path / "envoy", logs_dir=tmp_path / "logs")
    prepare(cfg)
    table = load_routes()
    splits = {"catalog": Split("catalog", frozenset({NEW.instance_id}), weight=10)}
    write_endpoints(cfg, table, [OLD, NEW], splits)
    write_static(cfg, table, Signer().jwks(), splits)
    assert _ports(cfg.envoy_dir, "catalog") == [7001]
    assert _ports(cfg.envoy_dir, "catalog-next") == [7002]
    clusters = {c["name"] for c in _load(render.cds_file(cfg.envoy_dir))["resources"]}
    assert {"catalog", "catalog-next"} <= clusters and "identity-next" not in clusters
    actions = _catalog_actions(cfg.envoy_dir)
    assert actions and all(a["weighted_clusters"]["clusters"] == [
        {"name": "catalog", "weight": 90}, {"name": "catalog-next", "weight": 10}]
        for a in actions)
    result = validate_generated(cfg.envoy_dir)
    assert result.ok, result.output

    # Promoting: the new instances join the plain cluster too, before the route goes back.
    promoting = {"catalog": Split("catalog", frozenset({NEW.instance_id}), 100, True)}
    write_endpoints(cfg, table, [NEW], promoting)
    assert _ports(cfg.envoy_dir, "catalog") == [7002]

    write_static(cfg, table, Signer().jwks(), {})
    assert all(a["cluster"] == "catalog" for a in _catalog_actions(cfg.envoy_dir))
    clusters = {c["name"] for c in _load(render.cds_file(cfg.envoy_dir))["resources"]}
    assert "catalog-next" not in clusters


def test_routes_move_to_rds_only_with_the_keys(tmp_path: Path) -> None:
    """Before the keys the listener has no jwt_authn filter: its routes stay inline, so no
    route that needs a user can reach it over RDS alone."""
    cfg = GatewayConfig(envoy_dir=tmp_path / "envoy", logs_dir=tmp_path / "logs")
    prepare(cfg)

    def hcm() -> dict[str, Any]:
        (listener,) = _load(render.lds_file(cfg.envoy_dir))["resources"]
        return dict(listener["filter_chains"][0]["filters"][0]["typed_config"])

    assert "route_config" in hcm() and "rds" not in hcm()
    write_static(cfg, load_routes(), Signer().jwks())
    assert hcm()["rds"]["route_config_name"] == render.ROUTE_CONFIG
    assert "route_config" not in hcm()


def test_a_weight_outside_0_to_100_is_refused() -> None:
    with pytest.raises(ValueError, match="percentage"):
        Split("catalog", frozenset(), weight=101)


async def test_the_control_plane_follows_the_splits(tmp_path: Path) -> None:
    cfg = GatewayConfig(envoy_dir=tmp_path / "envoy", logs_dir=tmp_path / "logs",
                        resync_every_s=60.0)
    prepare(cfg)
    registry = FakeRegistry()
    registry.set([OLD, NEW], notify=False)
    splits = TrafficSplits()
    stop = asyncio.Event()
    task = asyncio.create_task(run_control_plane(cfg, registry, stop, splits))  # type: ignore[arg-type]
    try:
        await wait_for(lambda: _async(_ports(cfg.envoy_dir, "catalog") == [7001, 7002]), 3,
                       "both instances in one cluster")
        # No resync is due for a minute: the split alone must wake the control plane.
        splits.set(Split("catalog", frozenset({NEW.instance_id}), weight=50))
        await wait_for(lambda: _async(render.eds_file(cfg.envoy_dir, "catalog-next").exists()
                                      and _ports(cfg.envoy_dir, "catalog-next") == [7002]
                                      and _ports(cfg.envoy_dir, "catalog") == [7001]), 3,
                       "the split's clusters")
        (routes,) = _load(render.rds_file(cfg.envoy_dir))["resources"]
        weighted = [r["route"]["weighted_clusters"] for r in routes["virtual_hosts"][0]["routes"]
                    if "route" in r and "weighted_clusters" in r["route"]]
        assert weighted and all(w["clusters"][1] == {"name": "catalog-next", "weight": 50}
                                for w in weighted)
        splits.clear("catalog")
        await wait_for(lambda: _async(_ports(cfg.envoy_dir, "catalog") == [7001, 7002]), 3,
                       "the split undone")
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
