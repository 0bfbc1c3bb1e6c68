"""Reading Envoy's admin ``/clusters`` text: one parser for the release runner, the edge
tests and the end-to-end helpers."""

from __future__ import annotations

from mercato.gateway.envoy import UpstreamHost, parse_clusters

# Abridged from a running edge: cluster-wide lines (no address), and per-host lines in no
# particular order.
ADMIN_CLUSTERS = """\
identity::observability_name::identity
identity::default_priority::max_connections::1024
identity::outlier::success_rate_average::-1
identity::127.0.0.1:12533::cx_active::2
identity::127.0.0.1:12533::hostname::identity-1
identity::127.0.0.1:12533::health_flags::healthy
identity::127.0.0.1:12533::weight::1
identity::127.0.0.1:12534::health_flags::/failed_active_hc/active_hc_timeout
identity::127.0.0.1:12534::hostname::identity-2
legacy::127.0.0.1:27824::cx_active::0
legacy::127.0.0.1:27824::health_flags::healthy
legacy::127.0.0.1:27825::cx_active::0
"""


def test_each_host_with_its_name_and_health() -> None:
    assert parse_clusters(ADMIN_CLUSTERS) == [
        UpstreamHost("identity", "127.0.0.1:12533", "identity-1", "healthy"),
        UpstreamHost("identity", "127.0.0.1:12534", "identity-2",
                     "/failed_active_hc/active_hc_timeout"),
        UpstreamHost("legacy", "127.0.0.1:27824", None, "healthy"),
    ]


def test_healthy_and_port() -> None:
    hosts = {h.address: h for h in parse_clusters(ADMIN_CLUSTERS)}
    assert hosts["127.0.0.1:12533"].healthy and hosts["127.0.0.1:12533"].port == 12533
    assert not hosts["127.0.0.1:12534"].healthy


def test_nothing_to_read() -> None:
    assert parse_clusters("") == []
    assert parse_clusters("no such admin\n") == []
