"""The edge's Envoy configuration for a cluster or a compose host: static, from the routes.

The same listener, routes, filters and cluster settings as the laptop's control plane
(``mercato.gateway.render``), with three differences: every cluster is STRICT_DNS on a name
that resolves to each ready instance (a headless Kubernetes Service, a compose service),
instead of EDS files written from the registry; Envoy fetches identity's JWKS itself
(``remote_jwks``; until it has them, routes that need a user answer 503, as on the laptop)
instead of being handed the keys; and the access log goes to stdout. A second
listener serves Envoy's readiness and Prometheus statistics, so the admin interface itself
stays on loopback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mercato.gateway import render
from mercato.gateway.routes import RouteTable, load_routes

LISTEN_PORT = 8080
STATS_PORT = 9902
ADMIN_PORT = 9901
ADMIN_CLUSTER = "envoy-admin"
STDOUT_LOG_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
HCM_FILTER = "envoy.filters.network.http_connection_manager"
_UNUSED_DIR = Path("/unused")  # render.py's file paths: replaced below


def dns_cluster(service: str, host: str, port: int) -> dict[str, Any]:
    """render.cluster with its EDS source swapped for DNS: every address the name resolves
    to is an endpoint, re-resolved every 5 s (a scaled-out pod takes traffic soon after it
    is ready; headless Services list ready pods only)."""
    cluster = render.cluster(service, _UNUSED_DIR)
    del cluster["eds_cluster_config"]
    cluster["type"] = "STRICT_DNS"
    cluster["dns_lookup_family"] = "V4_ONLY"
    cluster["dns_refresh_rate"] = "5s"
    cluster["respect_dns_ttl"] = False
    cluster["load_assignment"] = {"cluster_name": service, "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}]}
    return cluster


def edge_listener(table: RouteTable) -> dict[str, Any]:
    listener = render.listener(table, listen_host="0.0.0.0", listen_port=LISTEN_PORT,
                               logs_dir=_UNUSED_DIR, jwks=render.REMOTE_JWKS)
    for chain in listener["filter_chains"]:
        for network_filter in chain["filters"]:
            if network_filter["name"] != HCM_FILTER:
                continue
            hcm = network_filter["typed_config"]
            for log in hcm["access_log"]:
                log_format = log["typed_config"]["log_format"]
                log["name"] = "envoy.access_loggers.stdout"
                log["typed_config"] = {"@type": STDOUT_LOG_TYPE, "log_format": log_format}
    listener.pop("@type", None)
    return listener


def stats_listener() -> dict[str, Any]:
    """:9902 answers /ready (the pod's probes) and /stats/prometheus (scraping) from the
    admin interface, and nothing else of it."""
    routes = [{"match": {"path": path}, "route": {"cluster": ADMIN_CLUSTER}}
              for path in ("/ready", "/stats/prometheus")]
    return {
        "name": "stats",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": STATS_PORT}},
        "filter_chains": [{"filters": [{"name": HCM_FILTER, "typed_config": {
            "@type": render.HCM_TYPE, "stat_prefix": "stats", "codec_type": "AUTO",
            "route_config": {"name": "stats", "virtual_hosts": [
                {"name": "stats", "domains": ["*"], "routes": routes}]},
            "http_filters": [{"name": "envoy.filters.http.router",
                              "typed_config": {"@type": ROUTER_TYPE}}],
        }}]}],
    }


def admin_cluster() -> dict[str, Any]:
    return {"name": ADMIN_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": ADMIN_CLUSTER, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                             "port_value": ADMIN_PORT}}}}]}]}}


def static_config(host_of: Callable[[str], str], port: int,
                  table: RouteTable | None = None) -> dict[str, Any]:
    """Envoy's whole bootstrap; ``host_of(service)`` is the DNS name of its instances."""
    table = table or load_routes()
    boot = render.bootstrap(_UNUSED_DIR, admin_host="127.0.0.1", admin_port=ADMIN_PORT)
    del boot["dynamic_resources"]
    clusters = []
    for service in table.services:
        cluster = dns_cluster(service, host_of(service), port)
        cluster.pop("@type", None)
        clusters.append(cluster)
    boot["static_resources"] = {"listeners": [edge_listener(table), stats_listener()],
                                "clusters": [*clusters, admin_cluster()]}
    return boot
