"""The prod overlay's canary analysis (Argo Rollouts AnalysisTemplate): its Prometheus
queries, with the Rollout's arguments filled in, evaluated by promtool over made-up series
of a canary and stable pods: a canary failing or slow where the stable pods are not fails,
one doing as well (or as badly) as the stable pods passes, and health checks do not count."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chassis.metric_catalogue import LATENCY_BUCKETS
from deploy_manifests import K8S
from platform_metrics import prometheus_tools

TEMPLATE = K8S / "overlays" / "prod" / "analysis-template.yaml"
ROLLOUTS = K8S / "overlays" / "prod" / "rollouts.yaml"
CANARY, STABLE = "canaryhash", "stablehash"


def template() -> dict[str, Any]:
    return dict(yaml.safe_load(TEMPLATE.read_text()))


def query(metric: str) -> str:
    """The metric's query with the args a catalog Rollout passes and the defaults."""
    spec = template()["spec"]
    args = {a["name"]: a.get("value") for a in spec["args"]}
    args.update({"service": "catalog", "canary-hash": CANARY, "stable-hash": STABLE})
    (found,) = [m for m in spec["metrics"] if m["name"] == metric]
    text = str(found["provider"]["prometheus"]["query"])
    return re.sub(r"\{\{args\.([a-z0-9-]+)\}\}", lambda m: str(args[m.group(1)]), text)


def requests(pod_hash: str, per_min: int, errors_per_min: int, route: str = "/api/catalog/products",
             seconds: float = 0.01) -> list[dict[str, str]]:
    """Counter series of one pod over 10 minutes: requests, 5xx, and the latency histogram
    with every request in the bucket of ``seconds``."""
    labels = (f'service="catalog",rollouts_pod_template_hash="{pod_hash}",method="GET",'
              f'route="{route}"')
    series = [
        {"series": f'http_requests_total{{{labels},status="200"}}',
         "values": f"0+{per_min - errors_per_min}x10"},
        {"series": f'http_requests_total{{{labels},status="500"}}',
         "values": f"0+{errors_per_min}x10"},
        {"series": f'http_request_errors_total{{{labels},status="500"}}',
         "values": f"0+{errors_per_min}x10"},
    ]
    for le in (*LATENCY_BUCKETS, float("inf")):
        within = per_min if le >= seconds else 0
        le_text = "+Inf" if le == float("inf") else f"{le:g}"
        series.append({"series": f'http_request_duration_seconds_bucket{{{labels},le="{le_text}"}}',
                       "values": f"0+{within}x10"})
    return series


def fails(metric: str, series: list[dict[str, str]], tmp_path: Path) -> bool:
    """Whether the metric's successCondition (result <= 0) fails at minute 10."""
    outcomes = {}
    for expected in (0, 1):
        test = {"evaluation_interval": "1m", "tests": [{
            "interval": "1m", "input_series": series,
            "promql_expr_test": [{"expr": f"({query(metric)}) > bool 0", "eval_time": "10m",
                                  "exp_samples": [{"labels": "{}", "value": expected}]}]}]}
        path = tmp_path / f"{metric}-{expected}.test.yaml"
        path.write_text(yaml.safe_dump(test, sort_keys=False))
        done = subprocess.run([str(prometheus_tools().promtool), "test", "rules", str(path)],
                              capture_output=True, text=True, timeout=120, check=False)
        outcomes[expected] = done.returncode == 0
    assert outcomes[0] != outcomes[1], "promtool matched neither outcome (a broken query?)"
    return outcomes[1]


def test_a_canary_failing_where_the_stable_pods_do_not_fails(tmp_path: Path) -> None:
    assert fails("error-rate", requests(CANARY, 600, 120) + requests(STABLE, 600, 0),
                 tmp_path)


def test_a_canary_as_good_as_the_stable_pods_passes(tmp_path: Path) -> None:
    # Failing health checks are the platform's own traffic, not the users'.
    series = (requests(CANARY, 600, 0) + requests(STABLE, 600, 0)
              + requests(CANARY, 60, 60, route="/health/ready"))
    assert not fails("error-rate", series, tmp_path)
    assert not fails("latency-p95", series, tmp_path)


def test_a_canary_failing_no_more_than_twice_the_stable_rate_passes(tmp_path: Path) -> None:
    series = requests(CANARY, 600, 72) + requests(STABLE, 600, 60)  # 12 % against 10 %
    assert not fails("error-rate", series, tmp_path)
    worse = requests(CANARY, 600, 150) + requests(STABLE, 600, 60)  # 25 % against 10 %
    assert fails("error-rate", worse, tmp_path)


def test_a_slow_canary_fails_on_latency(tmp_path: Path) -> None:
    series = requests(CANARY, 600, 0, seconds=0.9) + requests(STABLE, 600, 0, seconds=0.01)
    assert fails("latency-p95", series, tmp_path)
    both_slow = requests(CANARY, 600, 0, seconds=0.9) + requests(STABLE, 600, 0, seconds=0.9)
    assert not fails("latency-p95", both_slow, tmp_path)


def test_every_rollout_passes_both_pod_template_hashes() -> None:
    wanted = {a["name"] for a in template()["spec"]["args"] if "value" not in a}
    rollouts = [d for d in yaml.safe_load_all(ROLLOUTS.read_text()) if d]
    assert rollouts
    for rollout in rollouts:
        args = rollout["spec"]["strategy"]["canary"]["analysis"]["args"]
        assert {a["name"] for a in args} == wanted, rollout["metadata"]["name"]
        hashes = {a["name"]: a.get("valueFrom", {}).get("podTemplateHashValue") for a in args}
        assert hashes["canary-hash"] == "Latest" and hashes["stable-hash"] == "Stable"


@pytest.fixture(autouse=True)
def _promtool() -> None:
    prometheus_tools()
