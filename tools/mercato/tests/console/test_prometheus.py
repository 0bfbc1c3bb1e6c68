"""The console's Prometheus: the production rule files with only their `for:` scaled, and
targets that keep a stopped instance (its `up` then reads 0)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mercato.runtime import prometheus
from mercato.runtime.paths import Home


def test_for_is_scaled_and_nothing_else_changes() -> None:
    src = (prometheus.rules_dir() / "messaging.rules.yaml").read_text()
    original = yaml.safe_load(src)
    scaled = yaml.safe_load(prometheus.scaled_rules(src, 0.05))
    for g0, g1 in zip(original["groups"], scaled["groups"], strict=True):
        for r0, r1 in zip(g0["rules"], g1["rules"], strict=True):
            assert {k: v for k, v in r0.items() if k != "for"} == \
                   {k: v for k, v in r1.items() if k != "for"}
            if "for" in r0:
                want = max(1, round(prometheus.seconds(r0["for"]) * 0.05))
                assert r1["for"] == f"{want}s"
    assert yaml.safe_load(prometheus.scaled_rules(src, 1.0)) == original


@pytest.mark.parametrize(("text", "secs"), [("10m", 600), ("1h30m", 5400), ("15s", 15),
                                            ("2m", 120)])
def test_durations(text: str, secs: float) -> None:
    assert prometheus.seconds(text) == secs


def test_for_scale_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(prometheus.FOR_SCALE_ENV, raising=False)
    assert prometheus.for_scale() == 1.0
    monkeypatch.setenv(prometheus.FOR_SCALE_ENV, "0.1")
    assert prometheus.for_scale() == 0.1
    monkeypatch.setenv(prometheus.FOR_SCALE_ENV, "3")
    with pytest.raises(ValueError, match="must be in"):
        prometheus.for_scale()


def test_targets_are_the_service_instances_stopped_ones_included(tmp_path: Path) -> None:
    home = Home(tmp_path)
    prometheus.directory(home).mkdir(parents=True)
    prometheus.write_targets(home, {
        "orders-1": {"kind": "service", "port": 7001, "pid": 10},
        "notifications-1": {"kind": "service", "port": 7002, "pid": None,
                            "state": "stopped"},
        "postgres": {"kind": "engine", "port": 5432, "pid": 11},
        "cart-1": {"kind": "service", "port": None, "pid": None},
    })
    groups = json.loads(prometheus.targets_file(home).read_text())
    assert [(g["targets"], g["labels"]["instance"]) for g in groups] == [
        (["127.0.0.1:7002"], "notifications-1"), (["127.0.0.1:7001"], "orders-1")]
    assert all("service" not in g["labels"] for g in groups)


def test_the_prometheus_api_needs_the_homes_password(tmp_path: Path) -> None:
    import subprocess
    import time

    import httpx2 as httpx
    from mercato.runtime.paths import free_port
    from mercato.runtime.telemetry import PROMETHEUS_USER, prometheus_password

    if prometheus.binary() is None:
        pytest.skip("no .tools/prometheus: make observability-tools")
    home = Home(tmp_path)
    home.ensure()
    port = free_port()
    argv = prometheus.prepare(home, port, 1.0)
    assert (prometheus.directory(home) / "web.yml").stat().st_mode & 0o777 == 0o600
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/api/v1/rules"
        auth = (PROMETHEUS_USER, prometheus_password(home))
        deadline = time.monotonic() + 30
        while True:
            try:
                ok = httpx.get(url, auth=auth, timeout=2)
                if ok.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "prometheus did not start"
            time.sleep(0.2)
        groups = {g["name"] for g in ok.json()["data"]["groups"]}
        assert groups, "the rule files were not loaded"
        assert httpx.get(url, timeout=2).status_code == 401
        assert httpx.get(url, auth=(PROMETHEUS_USER, "guess"), timeout=2).status_code == 401
    finally:
        proc.terminate()
        proc.wait(10)
