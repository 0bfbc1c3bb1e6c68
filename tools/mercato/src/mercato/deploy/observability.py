"""The observability stack as a kustomize Component (``deploy/observability``), which the
prod overlay includes: the OpenTelemetry Collector (hand-written objects in
``deploy/observability/k8s/otel-collector.yaml``), every service told to send it its traces,
and the alert rules and dashboards as ConfigMaps for the monitoring namespace's Prometheus
and Grafana. The parts that follow the services and the files (which ConfigMaps to patch,
which rule files and dashboards to ship) are generated here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mercato.deploy import dashboards
from mercato.deploy.k8s import OTEL_COLLECTOR as COLLECTOR
from mercato.deploy.k8s import OTLP_HTTP_PORT
from mercato.deploy.units import NAMESPACE, units

COMPONENT = Path("deploy/observability")
MONITORING = "monitoring"
PART_OF = {"app.kubernetes.io/part-of": "mercato"}
# The Grafana chart's dashboard sidecar loads every ConfigMap with this label.
DASHBOARD_LABEL = {"grafana_dashboard": "1"}

Obj = dict[str, Any]


def otlp_endpoints() -> list[Obj]:
    """Strategic-merge patches: each service's ConfigMap gains ``<P>_OTLP_ENDPOINT``."""
    return [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": f"{u.name}-config", "namespace": NAMESPACE},
             "data": {f"{u.prefix}OTLP_ENDPOINT": f"http://{COLLECTOR}:{OTLP_HTTP_PORT}"}}
            for u in units()]


def component(rule_files: list[str]) -> Obj:
    """The Component's kustomization; ``rule_files`` relative to the component."""
    generators: list[Obj] = [
        {"name": f"{COLLECTOR}-config", "namespace": NAMESPACE,
         "files": [f"config.yaml={COLLECTOR}/config.yaml"],
         "options": {"labels": {**PART_OF, "app.kubernetes.io/name": COLLECTOR}}},
        # Fixed names: Prometheus mounts this one at /etc/prometheus/rules/mercato.
        {"name": "mercato-prometheus-rules", "namespace": MONITORING, "files": rule_files,
         "options": {"disableNameSuffixHash": True, "labels": PART_OF}},
    ]
    # One ConfigMap per dashboard: all in one would pass the 256 KiB kubectl apply keeps in
    # its last-applied annotation.
    for name in dashboards.dashboards():
        generators.append({
            "name": f"mercato-dashboard-{name.removesuffix('.json')}", "namespace": MONITORING,
            "files": [f"{dashboards.DASHBOARDS_DIR.removeprefix(f'{COMPONENT}/')}/{name}"],
            "options": {"disableNameSuffixHash": True, "labels": {**PART_OF,
                                                                   **DASHBOARD_LABEL}}})
    return {"apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component",
            "resources": ["k8s/otel-collector.yaml"],
            "patches": [{"path": "k8s/otlp-endpoints.yaml"}],
            "configMapGenerator": generators}


def rule_files(root: Path) -> list[str]:
    rules = sorted((root / COMPONENT / "prometheus" / "rules").glob("*.rules.yaml"))
    return [str(p.relative_to(root / COMPONENT)) for p in rules]
