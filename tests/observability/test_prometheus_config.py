"""deploy/observability/prometheus/prometheus.yaml, run by a real Prometheus.

Debian's Prometheus build has no Kubernetes discovery, so the test hands the scrape job the
labels Kubernetes discovery would (a pod's annotations, name, labels, phase) as a static
target, and checks what the job's relabelling makes of them: the annotated port and path
scraped, the pod's labels kept (``rollouts_pod_template_hash`` for the canary analysis),
unannotated and pending pods dropped, and the service's own ``service`` label left as it is.
The same Prometheus loads every rule file."""

from __future__ import annotations

import http.server
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest
import yaml
from chassis.metrics import HttpMetrics
from mercato.runtime.paths import free_port
from platform_metrics import OBSERVABILITY, RULES, prometheus_tools
from prometheus_client import generate_latest

CONFIG = OBSERVABILITY / "prometheus" / "prometheus.yaml"


@pytest.fixture(scope="module")
def pod() -> Iterator[int]:
    """A service's metrics on an odd path, as a pod would serve them."""
    metrics = HttpMetrics("catalog")
    metrics.observe("GET", "/api/catalog/products", 200, 0.01)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/custom/metrics"
            self.send_response(200 if ok else 404)
            self.end_headers()
            self.wfile.write(generate_latest(metrics.registry) if ok else b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()


def discovered(port: int) -> list[dict[str, Any]]:
    """Pods as Kubernetes discovery describes them: the annotated one, one not annotated
    for scraping, one still pending."""
    pod = {"__meta_kubernetes_namespace": "mercato", "__meta_kubernetes_pod_phase": "Running"}
    return [
        {"targets": ["127.0.0.1:1"], "labels": {
            **pod, "__meta_kubernetes_pod_name": "catalog-7c9d-x1",
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": "catalog",
            "__meta_kubernetes_pod_label_rollouts_pod_template_hash": "7c9d",
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
            "__meta_kubernetes_pod_annotation_prometheus_io_port": str(port),
            "__meta_kubernetes_pod_annotation_prometheus_io_path": "/custom/metrics"}},
        {"targets": ["127.0.0.2:8000"], "labels": {
            **pod, "__meta_kubernetes_pod_name": "database-1"}},
        {"targets": ["127.0.0.3:8000"], "labels": {
            **pod, "__meta_kubernetes_pod_phase": "Pending",
            "__meta_kubernetes_pod_name": "orders-5f-x2",
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true"}},
    ]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, pod: int) -> Iterator[httpx.Client]:
    """One Prometheus for the module (it takes seconds to start on a busy machine)."""
    tmp_path = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load(CONFIG.read_text())
    (job,) = config["scrape_configs"]
    sd = job.pop("kubernetes_sd_configs")
    assert sd == [{"role": "pod", "namespaces": {"names": ["mercato"]}}]
    job["static_configs"] = discovered(pod)
    config["global"]["scrape_interval"] = "1s"
    config["rule_files"] = [str(RULES / "*.rules.yaml")]
    path = tmp_path / "prometheus.yaml"
    path.write_text(yaml.safe_dump(config))
    check = subprocess.run([str(prometheus_tools().promtool), "check", "config", str(path)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    process = subprocess.Popen(
        [str(prometheus_tools().prometheus), f"--config.file={path}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            yield client
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_for(client: httpx.Client, query: str, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = client.get("/api/v1/query", params={"query": query}).json()["data"]["result"]
        except (httpx.TransportError, ValueError):
            result = []  # not listening yet, or its plain-text 503 while it starts
        if result:
            return result
        assert time.monotonic() < deadline, f"Prometheus never had {query}"
        time.sleep(0.2)


def test_pods_are_scraped_by_their_annotations_with_the_labels_the_rules_use(
        prometheus: httpx.Client, pod: int) -> None:
    (series,) = wait_for(prometheus, "http_requests_total")
    assert series["metric"] == {
        "__name__": "http_requests_total", "service": "catalog", "method": "GET",
        "route": "/api/catalog/products", "status": "200", "job": "mercato-pods",
        "instance": f"127.0.0.1:{pod}", "namespace": "mercato", "pod": "catalog-7c9d-x1",
        "app": "catalog", "rollouts_pod_template_hash": "7c9d"}
    targets = prometheus.get("/api/v1/targets").json()["data"]
    assert len(targets["activeTargets"]) == 1
    assert len(targets["droppedTargets"]) == 2  # not annotated; pending


def test_prometheus_loads_every_rule_group(prometheus: httpx.Client) -> None:
    expected = {group["name"] for path in RULES.glob("*.rules.yaml")
                for group in yaml.safe_load(path.read_text())["groups"]}
    deadline = time.monotonic() + 30
    while True:
        try:
            groups = prometheus.get("/api/v1/rules").json()["data"]["groups"]
        except httpx.TransportError:
            groups = []
        if {g["name"] for g in groups} == expected:
            break
        assert time.monotonic() < deadline, f"rule groups loaded: {[g['name'] for g in groups]}"
        time.sleep(0.2)
    assert all(r["health"] != "err" for g in groups for r in g["rules"])
