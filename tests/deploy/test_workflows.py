"""The CI/CD workflows: valid for GitHub Actions (actionlint), one path filter and one code
owner per service, the images CI pushes are the ones the prod overlay runs, and the matrix
command gives each service the tests of those depending on it."""

from __future__ import annotations

import json
import re
import subprocess

import yaml
from deploy_manifests import BIN, K8S, REPO, k8s_name, services

WORKFLOWS = REPO / ".github" / "workflows"


def test_actionlint_finds_nothing() -> None:
    files = sorted(WORKFLOWS.glob("*.yaml"))
    assert files
    done = subprocess.run([str(BIN / "actionlint"), "-no-color", *map(str, files)],
                          capture_output=True, text=True, timeout=120, check=False, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def _services_workflow() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((WORKFLOWS / "services.yaml").read_text())


def test_every_service_has_a_path_filter_of_its_own_folder() -> None:
    steps = _services_workflow()["jobs"]["changes"]["steps"]
    (flt,) = [s for s in steps if s.get("uses", "").startswith("dorny/paths-filter")]
    filters = yaml.safe_load(flt["with"]["filters"])
    assert {k for k in filters if k != "shared"} == set(services())
    for service in services():
        assert filters[service] == [f"services/{service}/**"]
    assert {"libs/**", "uv.lock", "deploy/**"} <= set(filters["shared"])


def test_ci_pushes_the_images_the_prod_overlay_runs() -> None:
    job = _services_workflow()["jobs"]["service"]
    assert job["uses"] == "./.github/workflows/service.yaml"
    prefix = job["with"]["image"].removesuffix("${{ matrix.name }}")
    overlay = yaml.safe_load((K8S / "overlays" / "prod" / "kustomization.yaml").read_text())
    images = {i["name"]: i["newName"] for i in overlay["images"]}
    for service in services():
        assert images[f"mercato/{k8s_name(service)}"] == prefix + k8s_name(service)


def test_every_service_folder_has_a_team() -> None:
    owners = {}
    for line in (REPO / ".github" / "CODEOWNERS").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            path, *teams = line.split()
            owners[path] = teams
    for service in services():
        teams = owners.get(f"/services/{service}/")
        assert teams and all(re.fullmatch(r"@[\w-]+/[\w-]+", t) for t in teams), service
    assert len({tuple(owners[f"/services/{s}/"]) for s in services()}) == len(services())


def test_the_matrix_names_each_service_and_the_tests_of_those_depending_on_it() -> None:
    done = subprocess.run([str(BIN / "mercato"), "deploy", "ci-matrix", "catalog,order_history"],
                          capture_output=True, text=True, timeout=60, check=True)
    include = {row["service"]: row for row in json.loads(done.stdout)["include"]}
    assert set(include) == {"catalog", "order_history"}
    assert include["order_history"]["name"] == "order-history"
    # catalog's events feed inventory and cart; orders, cart and the storefront call it
    assert set(include["catalog"]["consumer_tests"].split()) == {
        f"services/{s}/tests/unit" for s in ("inventory", "cart", "orders", "storefront")}
    # only the storefront reads it (the order page)
    assert include["order_history"]["consumer_tests"] == "services/storefront/tests/unit"
    every = json.loads(subprocess.run([str(BIN / "mercato"), "deploy", "ci-matrix", "all"],
                                      capture_output=True, text=True, timeout=60,
                                      check=True).stdout)
    assert {row["service"] for row in every["include"]} == set(services())
    bad = subprocess.run([str(BIN / "mercato"), "deploy", "ci-matrix", "catalgo"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "unknown service(s) catalgo" in bad.stderr
