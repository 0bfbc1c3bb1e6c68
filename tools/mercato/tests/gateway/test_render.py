"""Rendering: route table -> listener and route config, registry instances -> EDS."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from chassis.registry import Instance
from gateway_test_support import Signer, envoy_route_for
from mercato.gateway import render
from mercato.gateway.files import dump
from mercato.gateway.routes import load_routes, parse_routes

ENVOY_DIR = Path("/srv/home/envoy")
LOGS_DIR = Path("/srv/home/logs")
JWKS = Signer().jwks()


def _hcm(jwks: dict[str, Any] | None) -> dict[str, Any]:
    lds = render.lds(load_routes(), listen_host="127.0.0.1", listen_port=8080, logs_dir=LOGS_DIR,
                     jwks=jwks)
    listener = lds["resources"][0]
    return dict(listener["filter_chains"][0]["filters"][0]["typed_config"])


@pytest.fixture(scope="module")
def hcm() -> dict[str, Any]:
    """The listener once the control plane has the signing keys (the usual state)."""
    return _hcm(JWKS)


def _instance(service: str, n: int, port: int) -> Instance:
    now = time.time()
    return Instance(service=service, instance_id=f"{service}-{n}", host="127.0.0.1", port=port,
                    pid=1000 + n, started_at=now, heartbeat_at=now)


def test_listener_and_admin_bind_loopback_only() -> None:
    lds = render.lds(load_routes(), listen_host="127.0.0.1", listen_port=8088, logs_dir=LOGS_DIR)
    address = lds["resources"][0]["address"]["socket_address"]
    assert address == {"address": "127.0.0.1", "port_value": 8088}
    boot = render.bootstrap(ENVOY_DIR, admin_host="127.0.0.1", admin_port=9901)
    assert boot["admin"]["address"]["socket_address"] == {"address": "127.0.0.1",
                                                           "port_value": 9901}


def test_the_runtime_puts_the_admin_on_a_private_unix_socket() -> None:
    socket = ENVOY_DIR.parent / "sockets" / "envoy-admin.sock"
    boot = render.bootstrap(ENVOY_DIR, admin_host="127.0.0.1", admin_port=9901,
                            admin_socket=socket)
    assert boot["admin"]["address"] == {"pipe": {"path": str(socket), "mode": 0o600}}


def test_bootstrap_loads_lds_and_cds_from_watched_files() -> None:
    boot = render.bootstrap(ENVOY_DIR, admin_host="127.0.0.1", admin_port=9901)
    for key, name in (("lds_config", "lds.yaml"), ("cds_config", "cds.yaml")):
        source = boot["dynamic_resources"][key]["path_config_source"]
        assert source == {"path": str(ENVOY_DIR / name), "watched_directory": {"path": str(ENVOY_DIR)}}


@pytest.mark.parametrize(("method", "path", "cluster", "needs_user", "limited"), [
    ("GET", "/.well-known/jwks.json", "identity", False, False),
    ("POST", "/api/identity/register", "identity", False, True),
    ("POST", "/api/identity/token", "identity", False, True),
    ("GET", "/api/identity/authorize?client_id=storefront", "identity", False, False),
    ("POST", "/api/identity/authorize", "identity", False, True),
    ("GET", "/api/identity/me", "identity", True, False),
    ("GET", "/api/identity/me/addresses", "identity", True, False),
    ("POST", "/api/identity/me/addresses", "identity", True, False),
    ("GET", "/api/identity/meow", "identity", False, False),
    ("GET", "/api/catalog/products?page_size=20", "catalog", False, False),
    ("POST", "/api/orders", "orders", True, True),
    ("GET", "/api/orders", "orders", True, False),
    ("POST", "/api/orders/1/cancel", "orders", True, False),
    ("POST", "/api/cart/checkout", "cart", True, True),
    ("POST", "/api/payments/payment-methods", "payments", True, True),
    ("GET", "/api/payments/payment-methods", "payments", True, False),
    ("PUT", "/api/cart/items/1", "cart", True, False),
    ("HEAD", "/api/catalog/products/1", "catalog", False, False),
    ("GET", "/api/catalog/categories", "catalog", False, False),
    ("POST", "/api/catalog/products", "catalog", True, False),
    ("PATCH", "/api/catalog/products/1", "catalog", True, False),
    ("PUT", "/api/catalog/products/1", "catalog", True, False),
    ("DELETE", "/api/catalog/products/1", "catalog", True, False),
    # The storefront's pages: its own session decides who may do what.
    ("GET", "/", "storefront", False, False),
    ("GET", "/products/1", "storefront", False, False),
    ("POST", "/signin", "storefront", False, True),
    ("POST", "/checkout", "storefront", False, True),
    ("POST", "/api/graphql", "storefront", False, False),
    ("GET", "/static/shop.css", "storefront", False, False),
])
def test_routes_pick_the_cluster_and_checks(hcm: dict[str, Any], method: str, path: str,
                                            cluster: str, needs_user: bool,
                                            limited: bool) -> None:
    route = envoy_route_for(hcm["route_config"], method, path)
    assert route is not None
    assert route["route"]["cluster"] == cluster
    # No prefix rewrite: services serve under /api/<service>/ themselves.
    assert not {"prefix_rewrite", "regex_rewrite", "path_rewrite_policy"} & set(route["route"])
    jwt = route["typed_per_filter_config"][render.JWT_FILTER]
    assert (jwt.get("requirement_name") == render.REQUIRE_USER) is needs_user
    assert jwt.get("disabled", False) is not needs_user
    assert (render.RATELIMIT_FILTER in route["typed_per_filter_config"]) is limited


@pytest.mark.parametrize("path", ["/api/catalogue", "/api", "/health/ready", "/metrics",
                                  "/productsx", "/nowhere"])
def test_unknown_paths_have_no_route(hcm: dict[str, Any], path: str) -> None:
    assert envoy_route_for(hcm["route_config"], "GET", path) is None


@pytest.mark.parametrize("path", ["/api/catalog/products", "/api/orders",
                                  "/.well-known/jwks.json"])
def test_reads_and_keyed_writes_are_retried_only_before_the_request_was_sent(
        hcm: dict[str, Any], path: str) -> None:
    """Repeating them is safe (a service dedupes on the key); other writes never are."""
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        for headers in ({}, {"Idempotency-Key": "k-1"}):
            route = envoy_route_for(hcm["route_config"], method, path, headers)
            assert route is not None
            action = route["route"]
            policy = action.get("retry_policy")
            if method in ("GET", "HEAD") or headers:
                assert policy is not None, (method, headers)
                assert set(policy["retry_on"].split(",")) <= {
                    "connect-failure", "refused-stream", "reset-before-request"}
                assert "retriable_status_codes" not in policy  # a 503 is load shed
            else:
                assert policy is None, (method, headers)


def test_a_keyed_write_keeps_the_route_s_auth_and_limits(hcm: dict[str, Any]) -> None:
    for method, path, needs_user in (("POST", "/api/orders", True),
                                     ("POST", "/api/identity/register", False),
                                     ("PATCH", "/api/catalog/products/1", True)):
        plain = envoy_route_for(hcm["route_config"], method, path)
        keyed = envoy_route_for(hcm["route_config"], method, path, {"Idempotency-Key": "k"})
        assert plain is not None and keyed is not None and plain is not keyed
        assert keyed["name"] == plain["name"].replace(" write", " write with key")
        assert keyed["typed_per_filter_config"] == plain["typed_per_filter_config"]
        assert keyed["route"]["timeout"] == plain["route"]["timeout"]
        jwt = keyed["typed_per_filter_config"][render.JWT_FILTER]
        assert (jwt.get("requirement_name") == render.REQUIRE_USER) is needs_user


def test_jwt_provider_matches_the_token_contract(hcm: dict[str, Any]) -> None:
    jwt = next(f for f in hcm["http_filters"] if f["name"] == render.JWT_FILTER)["typed_config"]
    provider = jwt["providers"][render.JWT_PROVIDER]
    assert provider["issuer"] == "mercato-identity"
    assert provider["audiences"] == ["mercato"]
    assert provider["forward"] is True
    assert provider["from_headers"] == [{"name": "Authorization", "value_prefix": "Bearer "}]
    # Handed over by the control plane, not fetched by Envoy (which answered 401 until its
    # first fetch succeeded).
    assert "remote_jwks" not in provider
    assert json.loads(provider["local_jwks"]["inline_string"]) == JWKS


def test_without_keys_protected_routes_answer_503_with_retry_after() -> None:
    """Before the control plane has read identity's keys, no token can be checked: a route
    that needs a user answers 503 (come back), never 401 (your token is bad)."""
    hcm = _hcm(None)
    assert render.JWT_FILTER not in [f["name"] for f in hcm["http_filters"]]
    for method, path, headers in (("GET", "/api/identity/me", {}),
                                  ("POST", "/api/orders", {"Idempotency-Key": "k"}),
                                  ("POST", "/api/orders", {}),
                                  ("DELETE", "/api/catalog/products/1", {})):
        route = envoy_route_for(hcm["route_config"], method, path, headers)
        assert route is not None and "route" not in route
        assert route["direct_response"]["status"] == 503
        assert render.JWT_FILTER not in route["typed_per_filter_config"]
        assert route["response_headers_to_add"][0]["header"] == {
            "key": "retry-after", "value": render.RETRY_AFTER_S}
    for method, path in (("GET", "/api/catalog/products"), ("GET", "/.well-known/jwks.json"),
                         ("POST", "/api/identity/token")):
        route = envoy_route_for(hcm["route_config"], method, path)
        assert route is not None and "direct_response" not in route
        assert render.JWT_FILTER not in route["typed_per_filter_config"]


def test_filter_order_limits_then_authenticates_then_buffers(hcm: dict[str, Any]) -> None:
    names = [f["name"] for f in hcm["http_filters"]]
    assert names == [render.RATELIMIT_FILTER, render.JWT_FILTER, render.BUFFER_FILTER,
                     "envoy.filters.http.router"]
    buffer = hcm["http_filters"][2]["typed_config"]
    assert [f["name"] for f in _hcm(None)["http_filters"]] == [
        render.RATELIMIT_FILTER, render.BUFFER_FILTER, "envoy.filters.http.router"]
    assert buffer["max_request_bytes"] == 1 << 20


def test_token_route_has_a_bucket_per_client_address_under_a_total_ceiling(
        hcm: dict[str, Any]) -> None:
    route = envoy_route_for(hcm["route_config"], "POST", "/api/identity/token")
    assert route is not None
    limit = route["typed_per_filter_config"][render.RATELIMIT_FILTER]
    assert limit["token_bucket"] == {"max_tokens": 100, "tokens_per_fill": 100,
                                     "fill_interval": "1s"}
    assert limit["always_consume_default_token_bucket"] is True
    # The descriptor entry has no value: one bucket per remote address seen (dynamic).
    assert limit["rate_limits"] == [{"actions": [{"remote_address": {}}]}]
    assert limit["descriptors"] == [{
        "entries": [{"key": "remote_address"}],
        "token_bucket": {"max_tokens": 10, "tokens_per_fill": 5, "fill_interval": "1s"}}]
    assert limit["max_dynamic_descriptors"] == render.MAX_CLIENT_BUCKETS


def test_a_per_client_limit_alone_never_consumes_a_shared_bucket() -> None:
    table = parse_routes({"routes": [{"path": "/a", "service": "x",
                                      "rate_limit": {"per_client": {"per_second": 2}}}]})
    limit = render.rate_limit(table.routes[0], table.routes[0].rate_limit)  # type: ignore[arg-type]
    assert limit["always_consume_default_token_bucket"] is False


def test_the_client_address_header_is_the_edges_own(hcm: dict[str, Any]) -> None:
    added = hcm["route_config"]["request_headers_to_add"]
    assert added == [{"header": {"key": render.CLIENT_ADDRESS_HEADER,
                                 "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"},
                      "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]


def test_responses_get_nosniff_and_lose_instance_names(hcm: dict[str, Any]) -> None:
    config = hcm["route_config"]
    assert render.NOSNIFF in config["response_headers_to_add"]
    assert config["response_headers_to_remove"] == ["x-mercato-instance"]
    # Every local reply too, a 404 without a route included.
    for mapper in hcm["local_reply_config"]["mappers"]:
        assert render.NOSNIFF in mapper["headers_to_add"], mapper["filter"]


def test_local_replies_are_problem_json(hcm: dict[str, Any]) -> None:
    reply = hcm["local_reply_config"]
    formats = [reply["body_format"]] + [m["body_format_override"] for m in reply["mappers"]]
    for fmt in formats:
        assert fmt["content_type"] == "application/problem+json"
        assert fmt["json_format"]["status"] == "%RESPONSE_CODE%"
        assert fmt["json_format"]["type"] == "about:blank"
    statuses = {m["filter"]["status_code_filter"]["comparison"]["value"]["default_value"]
                for m in reply["mappers"] if "status_code_filter" in m["filter"]}
    assert {401, 404, 413, 429, 503} <= statuses
    unavailable = next(m for m in reply["mappers"] if m["filter"].get("status_code_filter", {})
                       .get("comparison", {}).get("value", {}).get("default_value") == 503)
    assert unavailable["headers_to_add"][0]["header"] == {"key": "retry-after",
                                                          "value": render.RETRY_AFTER_S}


def test_access_log_is_json_with_the_fields_operators_need(hcm: dict[str, Any]) -> None:
    log = hcm["access_log"][0]["typed_config"]
    assert log["path"] == str(LOGS_DIR / "envoy-access.log")
    fields = log["log_format"]["json_format"]
    for name in ("method", "path", "status", "duration_ms", "upstream_host", "traceparent",
                 "request_id", "user_agent", "upstream_instance"):
        assert name in fields
    assert fields["path"] == "%REQ_WITHOUT_QUERY(:PATH)%"
    assert not any("%REQ(:PATH)%" in value for value in fields.values())


def test_clusters_are_eds_from_one_file_each() -> None:
    cds = render.cds(load_routes(), ENVOY_DIR)
    names = [c["name"] for c in cds["resources"]]
    assert names == sorted({r.service for r in load_routes().routes})
    assert {"identity", "catalog", "inventory", "payments", "shipping"} <= set(names)
    for cluster in cds["resources"]:
        assert cluster["type"] == "EDS"
        assert cluster["connect_timeout"] == "1s"
        source = cluster["eds_cluster_config"]["eds_config"]["path_config_source"]
        assert source["path"] == str(ENVOY_DIR / f"eds-{cluster['name']}.yaml")
        assert source["watched_directory"] == {"path": str(ENVOY_DIR)}
        assert cluster["outlier_detection"]["consecutive_local_origin_failure"] == 1
        assert cluster["ignore_health_on_host_removal"] is True
        # The lenient readiness: an instance whose broker is down still takes requests.
        check = cluster["health_checks"][0]
        assert check["http_health_check"]["path"] == "/health/ready"
        assert check["unhealthy_interval"] == "0.5s"


def test_only_unreachable_hosts_are_ejected_never_for_an_answer() -> None:
    """A 503 is an answer (load shed, a dependency down): ejecting the only instance for it
    would make every request to that service fail at the edge."""
    for cluster in render.cds(load_routes(), ENVOY_DIR)["resources"]:
        od = cluster["outlier_detection"]
        assert od["split_external_local_origin_errors"] is True
        assert od["enforcing_consecutive_local_origin_failure"] == 100
        for status_based in ("enforcing_consecutive_5xx", "enforcing_consecutive_gateway_failure",
                             "enforcing_success_rate"):
            assert od.get(status_based) == 0, (cluster["name"], status_based)


def test_instances_are_grouped_by_service_and_sorted() -> None:
    instances = [_instance("catalog", 2, 7002), _instance("identity", 1, 7101),
                 _instance("catalog", 1, 7001)]
    cla = render.load_assignment("catalog", instances)
    endpoints = cla["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["hostname"] for e in endpoints] == ["catalog-1", "catalog-2"]
    assert [e["endpoint"]["address"]["socket_address"]["port_value"] for e in endpoints] == [
        7001, 7002]
    assert cla["cluster_name"] == "catalog"


def test_a_service_without_instances_gets_an_empty_assignment() -> None:
    cla = render.load_assignment("catalog", [_instance("identity", 1, 7101)])
    assert cla["cluster_name"] == "catalog"
    assert cla["endpoints"] == []


def test_rendering_is_deterministic() -> None:
    table = load_routes()
    for jwks in (None, JWKS):
        first = render.documents(table, envoy_dir=ENVOY_DIR, logs_dir=LOGS_DIR,
                                 listen_host="127.0.0.1", listen_port=8080, jwks=jwks)
        second = render.documents(table, envoy_dir=ENVOY_DIR, logs_dir=LOGS_DIR,
                                  listen_host="127.0.0.1", listen_port=8080,
                                  jwks=json.loads(json.dumps(jwks)))
        assert dump(first[render.lds_file(ENVOY_DIR)]) == dump(second[render.lds_file(ENVOY_DIR)])
        assert first == second


def test_an_edge_without_a_control_plane_fetches_the_keys_itself() -> None:
    """The static production config (mercato deploy render) has no control plane to hand
    it keys: Envoy fetches identity's JWKS, and a fetch that has not succeeded yet is a 503
    with Retry-After, like the laptop's edge before it has keys."""
    hcm = _hcm(render.REMOTE_JWKS)
    jwt = next(f for f in hcm["http_filters"] if f["name"] == render.JWT_FILTER)["typed_config"]
    remote = jwt["providers"][render.JWT_PROVIDER]["remote_jwks"]
    assert remote["http_uri"]["cluster"] == "identity"
    assert remote["http_uri"]["uri"] == "http://identity/.well-known/jwks.json"
    assert remote["cache_duration"] == f"{load_routes().jwt.refresh_s}s"
    assert remote["async_fetch"]["fast_listener"] is True
    assert hcm["route_config"] == _hcm(JWKS)["route_config"]
    (not_fetched,) = [m for m in hcm["local_reply_config"]["mappers"]
                      if "Jwks_remote_fetch_is_failed" in str(m["filter"])]
    assert not_fetched["status_code"] == 503
    assert not_fetched["headers_to_add"][0]["header"] == {"key": "retry-after",
                                                          "value": render.RETRY_AFTER_S}
