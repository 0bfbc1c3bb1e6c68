"""Every generated file passes ``envoy --mode validate``, with no deprecated fields."""

from __future__ import annotations

import time
from pathlib import Path

from chassis.registry import Instance
from gateway_test_support import Signer
from mercato.gateway import GatewayConfig, prepare
from mercato.gateway.control import write_endpoints, write_static
from mercato.gateway.envoy import static_bootstrap, validate, validate_generated
from mercato.gateway.routes import default_routes_file, load_routes

LATER_SERVICES = """\
  - {prefix: /api/wishlist, service: wishlist, auth: user}
  - {prefix: /api/returns, service: returns, auth: user, timeout_s: 30}
  - {prefix: /api/reviews, service: reviews, rate_limit: {total: {per_second: 5, burst: 10}}}
  - {path: /api/wishlist/share, service: wishlist, auth: user,
     rate_limit: {per_client: {per_second: 1}}}
  - {prefix: /api/catalog/images, service: catalog, auth: {read: public, write: user},
     max_body_bytes: 8388608}
  - {prefix: /, service: storefront, auth: public}
"""


def _check(envoy_dir: Path) -> None:
    result = validate_generated(envoy_dir)
    assert result.ok, result.output
    assert "Deprecated field" not in result.output, result.output


def _instance(service: str, n: int, port: int) -> Instance:
    now = time.time()
    return Instance(service=service, instance_id=f"{service}-{n}", host="127.0.0.1", port=port,
                    pid=n, started_at=now, heartbeat_at=now)


def test_prepared_files_validate(tmp_path: Path) -> None:
    cfg = GatewayConfig(envoy_dir=tmp_path / "envoy", logs_dir=tmp_path / "logs")
    prepare(cfg)
    _check(cfg.envoy_dir)


def test_files_with_endpoints_and_keys_validate(tmp_path: Path) -> None:
    cfg = GatewayConfig(envoy_dir=tmp_path / "envoy", logs_dir=tmp_path / "logs")
    prepare(cfg)
    write_endpoints(cfg, load_routes(), [_instance("catalog", 1, 7001),
                                         _instance("catalog", 2, 7002),
                                         _instance("identity", 1, 7101)])
    assert cfg.envoy_dir / "lds.yaml" in write_static(cfg, load_routes(), Signer().jwks())
    _check(cfg.envoy_dir)


def test_every_kind_of_route_validates(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(default_routes_file().read_text() + LATER_SERVICES)
    cfg = GatewayConfig(envoy_dir=tmp_path / "envoy", logs_dir=tmp_path / "logs",
                        routes_file=routes)
    prepare(cfg)
    _check(cfg.envoy_dir)
    write_static(cfg, load_routes(routes), Signer().jwks())
    _check(cfg.envoy_dir)
    inlined = static_bootstrap(cfg.envoy_dir)["static_resources"]
    # The check must really have inlined everything, or it proves nothing.
    assert len(inlined["listeners"]) == 1
    assert {c["name"] for c in inlined["clusters"]} >= {"storefront", "order_history",
                                                         "storefront-static-check"}


def test_validation_catches_a_broken_file(tmp_path: Path) -> None:
    cfg = GatewayConfig(envoy_dir=tmp_path / "envoy", logs_dir=tmp_path / "logs")
    prepare(cfg)
    lds = cfg.envoy_dir / "lds.yaml"
    lds.write_text(lds.read_text().replace("max_request_bytes", "max_request_byte"))
    assert not validate_generated(cfg.envoy_dir).ok


def test_bootstrap_alone_validates(tmp_path: Path) -> None:
    cfg = GatewayConfig(envoy_dir=tmp_path / "envoy", logs_dir=tmp_path / "logs")
    prepare(cfg)
    result = validate(cfg.bootstrap_file)
    assert result.ok, result.output


def test_files_with_the_edge_tracer_validate(tmp_path: Path) -> None:
    from mercato.gateway.render import EdgeTelemetry

    cfg = GatewayConfig(envoy_dir=tmp_path / "envoy", logs_dir=tmp_path / "logs",
                        telemetry=EdgeTelemetry(port=4318, token="t", sampling_percent=25.0))
    prepare(cfg)
    write_static(cfg, load_routes(), Signer().jwks())
    _check(cfg.envoy_dir)
