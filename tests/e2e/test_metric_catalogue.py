"""What the running platform exports is what the metric catalogue says, so the alert rules
and dashboards (checked against the catalogue in tests/observability) read real series:
every service's /metrics serves only catalogued metrics, of the catalogued type and labels,
each carrying its service; together they serve every catalogued one; and the edge's Envoy
serves the Envoy metrics the dashboards use."""

from __future__ import annotations

import re
from collections import defaultdict

import httpx2 as httpx
import pytest
from chassis.metric_catalogue import CHASSIS_METRICS, MetricSpec
from edge_helpers import Platform
from mercato.deploy.dashboards import EXTERNAL_METRICS
from mercato.runtime.paths import Home
from orders.metrics import ORDERS_METRICS
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

CATALOGUE: dict[str, MetricSpec] = {s.name: s for s in (*CHASSIS_METRICS, *ORDERS_METRICS)}
TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.M)
# Labels a sample may carry beyond its metric's own: the histogram's bucket bound.
SAMPLE_LABELS = {"le"}


def scrape_services(platform: Platform) -> dict[str, str]:
    """Each service instance's /metrics text, by instance name."""
    with platform.client() as c:  # some traffic, so labelled series have samples
        assert c.get("/api/catalog/products").status_code == 200
    return {name: httpx.get(f"http://127.0.0.1:{p['port']}/metrics", timeout=10).text
            for name, p in platform.state()["processes"].items()
            if p["kind"] == "service" and p["port"]}


def test_services_serve_exactly_the_catalogued_metrics(platform: Platform) -> None:
    served: dict[str, set[str]] = defaultdict(set)
    for instance, text in scrape_services(platform).items():
        service = instance.rsplit("-", 1)[0]
        for name, kind in TYPE_LINE.findall(text):
            assert name in CATALOGUE, f"{instance} serves {name}, which no catalogue lists"
            assert CATALOGUE[name].kind == kind, f"{name} is a {kind}, catalogued as " \
                                                 f"{CATALOGUE[name].kind}"
            served[name].add(service)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                assert sample.labels.get("service") == service, (instance, sample)
                spec = CATALOGUE[family.name if family.type != "counter"
                                 else family.name + "_total"]
                assert set(sample.labels) - SAMPLE_LABELS == {"service", *spec.labels}, \
                    f"{sample.name}{sample.labels}: catalogued labels {spec.labels}"
    assert set(CATALOGUE) - set(served) == set(), "catalogued, served by no service"
    # Each service serves the chassis's own everywhere, the rest where it has the part.
    assert served["http_requests_total"] == served["process_start_time_seconds"] \
        == served["dependency_up"]
    assert served["saga_running"] == served["orders_sagas_running"] == {"orders"}
    assert served["http_client_breaker_state"] == {"orders", "cart", "storefront"}


def test_the_edge_serves_the_envoy_metrics_the_dashboards_read(platform: Platform) -> None:
    home = Home(platform.home)
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(home.envoy_admin_socket)),
                      timeout=10) as admin:
        text = admin.get("http://envoy/stats/prometheus").text
    types = dict(TYPE_LINE.findall(text))
    for spec in EXTERNAL_METRICS:
        if spec.group == "envoy":
            assert types.get(spec.name) == spec.kind, f"{spec.name}: {types.get(spec.name)}"
    edge = [line for line in text.splitlines()
            if line.startswith("envoy_http_downstream_rq_xx{")
            and 'envoy_http_conn_manager_prefix="edge"' in line]
    assert edge, "the edge's listener has no envoy_http_conn_manager_prefix=\"edge\""
