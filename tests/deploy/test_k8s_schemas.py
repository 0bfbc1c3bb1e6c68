"""Every object of every overlay matches its schema, offline: the built-in kinds against
Kubernetes' own (kubernetes-validate, strict: unknown fields fail), at the oldest Kubernetes
mercato supports and the newest the validator knows; the operators' kinds (KEDA,
CloudNativePG, Argo Rollouts) against deploy/k8s/schemas/."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from deploy_manifests import K8S, Obj, find, overlays, render

# The oldest Kubernetes the manifests are for: the preStop sleep action, matchLabelKeys in
# topology spread and the PDB's unhealthyPodEvictionPolicy are all on by default from 1.31.
OLDEST_KUBERNETES = "1.31"
VERSIONS = (OLDEST_KUBERNETES, kubernetes_validate.latest_version())
SCHEMAS = K8S / "schemas"

# kubernetes-validate reads (and parses) its multi-megabyte definitions file on every call:
# 2.7 s an overlay. Read once, the whole module takes under a second a version.
kubernetes_validate.utils.schema_contents = functools.cache(  # type: ignore[assignment]
    kubernetes_validate.utils.schema_contents)


def custom_schema(doc: Obj) -> Path:
    group, _, version = doc["apiVersion"].rpartition("/")
    return SCHEMAS / f"{group}_{version}_{doc['kind'].lower()}.yaml"


def problems(doc: Obj) -> list[str]:
    where = f"{doc['kind']} {doc['metadata'].get('name')}"
    found: list[str] = []
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            path = custom_schema(doc)
            if not path.is_file():
                return [f"{where}: no schema for {doc['apiVersion']} {doc['kind']} "
                        f"(Kubernetes has none; add {path.relative_to(K8S.parent.parent)})"]
            validator = jsonschema.Draft202012Validator(yaml.safe_load(path.read_text()))
            return [f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
                    for e in validator.iter_errors(doc)]
        except kubernetes_validate.ValidationError as exc:
            found.append(f"{where} (Kubernetes {version}): {exc.message}")
    return found


@pytest.mark.parametrize("overlay", ["base", *overlays()])
def test_every_object_matches_its_schema(overlay: str) -> None:
    docs = render(overlay)
    assert docs
    errors = [p for doc in docs for p in problems(doc)]
    assert not errors, "\n".join(errors)


def test_every_schema_is_a_valid_json_schema() -> None:
    schemas = sorted(SCHEMAS.glob("*.yaml"))
    assert len(schemas) >= 5
    for path in schemas:
        jsonschema.Draft202012Validator.check_schema(yaml.safe_load(path.read_text()))


def _mutated(kind: str, overlay: str, change: str) -> Obj:
    doc = copy.deepcopy(find(render(overlay), kind)[0])
    exec(change, {"doc": doc})  # a one-line edit written in this file
    return doc


@pytest.mark.parametrize(("kind", "overlay", "change"), [
    # a misspelt field, a wrong type, a value outside its enum, a missing requirement
    ("Deployment", "base", "doc['spec']['template']['spec']['securityContext']['runAsNonroot'] = True"),
    ("Deployment", "base", "doc['spec']['template']['spec']['containers'][0]['ports'][0]['containerPort'] = 'http'"),
    ("ScaledObject", "base", "doc['spec']['minReplicas'] = 1"),
    ("ScaledObject", "base", "doc['spec']['triggers'][0]['metadata'].pop('consumer')"),
    ("ScaledObject", "base", "doc['spec']['triggers'][0]['metadata']['lagTreshold'] = '5'"),
    ("Cluster", "base", "doc['spec']['postgresql']['synchronous']['method'] = 'all'"),
    ("Database", "base", "doc['spec'].pop('owner')"),
    ("Rollout", "prod", "doc['spec']['strategy']['canary']['steps'][0] = {'setWeight': 25, 'pause': {}}"),
    ("Rollout", "prod", "doc['spec']['workloadRef']['scaleDown'] = 'eventually'"),
    ("AnalysisTemplate", "prod", "doc['spec']['metrics'][0]['provider']['prometheus'].pop('query')"),
])
def test_a_wrong_field_is_refused(kind: str, overlay: str, change: str) -> None:
    assert problems(_mutated(kind, overlay, change)), f"{change} was accepted"
