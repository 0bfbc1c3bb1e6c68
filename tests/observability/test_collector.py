"""The OpenTelemetry Collector's configuration (deploy/observability/otel-collector) holds
together: no otelcol binary comes from the package registries, so its structure is checked
here the way the collector checks it at start (every component a pipeline names is
defined, of a known type, every defined one used), plus what the collector's own check
cannot see: the ports agree with the Kubernetes objects, the services' OTLP endpoints and
Prometheus's scrape annotation, and traces and metrics each reach a store."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from platform_metrics import OBSERVABILITY

CONFIG = OBSERVABILITY / "otel-collector" / "config.yaml"
OBJECTS = OBSERVABILITY / "k8s" / "otel-collector.yaml"
SECTIONS = ("receivers", "processors", "exporters", "connectors", "extensions")
# Component types of the pinned otelcol-contrib image this configuration may use.
KNOWN_TYPES = {
    "receivers": {"otlp", "prometheus", "hostmetrics"},
    "processors": {"memory_limiter", "batch", "resource", "attributes", "k8sattributes",
                   "tail_sampling", "filter"},
    "exporters": {"otlp", "otlphttp", "prometheus", "prometheusremotewrite", "debug"},
    "connectors": {"spanmetrics", "servicegraph"},
    "extensions": {"health_check", "pprof", "zpages"},
}


def config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def objects() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(OBJECTS.read_text())}


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def collector_check(cfg: dict[str, Any]) -> list[str]:
    """What otelcol's own validation refuses at start, as far as structure goes."""
    errors = []
    for section in SECTIONS:
        for name in cfg.get(section) or {}:
            kind = name.split("/", 1)[0]
            if kind not in KNOWN_TYPES[section]:
                errors.append(f"{section}: unknown type {kind!r} ({name})")
    used: dict[str, set[str]] = {s: set() for s in SECTIONS}
    pipelines = cfg["service"]["pipelines"]
    if not pipelines:
        errors.append("no pipelines")
    for pipeline, parts in pipelines.items():
        if pipeline.split("/", 1)[0] not in ("traces", "metrics", "logs"):
            errors.append(f"pipeline {pipeline}: not traces, metrics or logs")
        for section in ("receivers", "processors", "exporters"):
            for name in parts.get(section, []):
                defined = set(cfg.get(section) or {}) | set(cfg.get("connectors") or {})
                if name not in defined:
                    errors.append(f"pipeline {pipeline}: {section} {name!r} is not defined")
                used["connectors" if name in (cfg.get("connectors") or {}) else section].add(
                    name)
        if not parts.get("receivers") or not parts.get("exporters"):
            errors.append(f"pipeline {pipeline}: needs receivers and exporters")
    for name in cfg["service"].get("extensions", []):
        if name not in (cfg.get("extensions") or {}):
            errors.append(f"extension {name!r} is not defined")
        used["extensions"].add(name)
    for section in SECTIONS:
        for name in set(cfg.get(section) or {}) - used[section]:
            errors.append(f"{section}: {name!r} is defined and never used")
    return errors


def test_the_configuration_is_one_the_collector_accepts() -> None:
    assert collector_check(config()) == []


@pytest.mark.parametrize(("edit", "complaint"), [
    ("cfg['service']['pipelines']['traces']['exporters'] = ['otlp/tempo']", "not defined"),
    ("cfg['exporters']['jaegr'] = {}", "unknown type 'jaegr'"),
    ("cfg['processors']['batch/spare'] = {}", "never used"),
    ("cfg['service']['extensions'].append('pprof')", "extension 'pprof' is not defined"),
])
def test_the_check_refuses_what_the_collector_would(edit: str, complaint: str) -> None:
    cfg = config()
    exec(edit, {"cfg": cfg})  # one-line edits written above
    assert any(complaint in e for e in collector_check(cfg))


def test_traces_reach_the_trace_store_and_metrics_prometheus() -> None:
    cfg = config()
    pipelines = cfg["service"]["pipelines"]
    assert pipelines["traces"]["receivers"] == ["otlp"]
    (trace_exporter,) = pipelines["traces"]["exporters"]
    assert trace_exporter.split("/")[0] in {"otlp", "otlphttp"}
    assert cfg["exporters"][trace_exporter]["endpoint"].startswith("tempo.monitoring.svc")
    (metrics_exporter,) = pipelines["metrics"]["exporters"]
    assert metrics_exporter in {"prometheus", "prometheusremotewrite"}
    for parts in pipelines.values():
        # memory_limiter first (refuse before the limit), batch last (batch what passed).
        assert parts["processors"][0] == "memory_limiter"
        assert parts["processors"][-1] == "batch"


def test_the_ports_agree_with_the_pod_the_services_and_prometheus() -> None:
    cfg, objs = config(), objects()
    protocols = cfg["receivers"]["otlp"]["protocols"]
    grpc, http = port_of(protocols["grpc"]["endpoint"]), port_of(protocols["http"]["endpoint"])
    pod = objs["Deployment"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["otlp-grpc"] == grpc and ports["otlp-http"] == http
    assert ports["metrics"] == port_of(cfg["exporters"]["prometheus"]["endpoint"])
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"])
    assert ports["health"] == port_of(cfg["extensions"]["health_check"]["endpoint"])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "health"
    service_ports = {p["name"]: p["port"] for p in objs["Service"]["spec"]["ports"]}
    assert service_ports == {"otlp-grpc": grpc, "otlp-http": http}
    # The chassis exports over OTLP/HTTP to <endpoint>/v1/traces: the http receiver.
    patches = list(yaml.safe_load_all((OBSERVABILITY / "k8s" / "otlp-endpoints.yaml")
                                       .read_text()))
    assert patches
    for patch in patches:
        (endpoint,) = patch["data"].values()
        assert endpoint == f"http://{objs['Service']['metadata']['name']}:{http}"
    # The collector's policy lets the services in on both OTLP ports.
    ingress = objs["NetworkPolicy"]["spec"]["ingress"]
    assert {p["port"] for rule in ingress for p in rule["ports"]} >= {grpc, http}


def test_the_collector_image_is_pinned() -> None:
    (container,) = objects()["Deployment"]["spec"]["template"]["spec"]["containers"]
    name, _, tag = container["image"].rpartition(":")
    assert name == "otel/opentelemetry-collector-contrib" and tag[0].isdigit()
    assert container["args"] == ["--config=/etc/otelcol/config.yaml"]
