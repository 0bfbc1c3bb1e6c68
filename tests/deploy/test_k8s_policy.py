"""The rules every workload of every overlay keeps, and every service has what it needs.

Per pod: non-root, no privilege escalation, read-only root, all capabilities dropped,
seccomp RuntimeDefault, no service-account token, requests and limits on every container,
startup/liveness/readiness probes (on the chassis's health endpoints for a service).
Per service: a Deployment (released through a Rollout in prod), a migration before it starts,
a PodDisruptionBudget, topology spread, a NetworkPolicy, an autoscaler. And the network
allows exactly the flows the architecture has.
"""

from __future__ import annotations

import re

import pytest
from deploy_manifests import (
    POD_KINDS,
    REPO,
    Obj,
    find,
    k8s_name,
    one,
    overlays,
    pod_spec,
    render,
    selects,
    services,
)
from mercato.deploy.units import UNITS

OVERLAYS = ["base", *overlays()]
HTTP = 8000


def workloads(docs: tuple[Obj, ...]) -> list[Obj]:
    return [d for d in docs if d["kind"] in POD_KINDS and pod_spec(d) is not None]


def pod_labels(workload: Obj) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_locked_down(overlay: str) -> None:
    errors = []
    for w in workloads(render(overlay)):
        name, spec = w["metadata"]["name"], pod_spec(w)
        assert spec is not None
        pod = spec.get("securityContext", {})
        if pod.get("runAsNonRoot") is not True:
            errors.append(f"{name}: pod runAsNonRoot is not true")
        if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            errors.append(f"{name}: pod seccompProfile is not RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            errors.append(f"{name}: mounts a service-account token it never uses")
        for c in spec.get("initContainers", []) + spec["containers"]:
            where = f"{name}/{c['name']}"
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{where}: root filesystem is writable")
            if sc.get("privileged"):
                errors.append(f"{where}: privileged")
            if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc["capabilities"].get("add"):
                errors.append(f"{where}: capabilities are not all dropped")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                if set(res.get(part, {})) < {"cpu", "memory"}:
                    errors.append(f"{where}: no {part} for cpu and memory")
            image = c["image"]
            untagged = ":" not in image.rsplit("/", 1)[-1] and "@" not in image
            if overlay != "base" and (untagged or image.endswith(":latest")):
                errors.append(f"{where}: image {image} has no pinned tag")
        for c in spec["containers"]:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe not in c:
                    errors.append(f"{name}/{c['name']}: no {probe}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", services())
def test_every_service_has_its_objects(overlay: str, service: str) -> None:
    """A new service (a runtime entry or a folder under services/) fails here until it has
    manifests: `mercato deploy render` after adding its facts to mercato/deploy/units.py."""
    docs, name = render(overlay), k8s_name(service)
    prefix = service.upper() + "_"
    deployment = one(docs, "Deployment", name)
    spec = pod_spec(deployment)
    assert spec is not None
    labels = pod_labels(deployment)
    (serve,) = [c for c in spec["containers"] if c["name"] == name]

    # probes on the chassis's endpoints: alive for startup and liveness, ready for traffic
    assert serve["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert serve["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert serve["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    # Kubernetes' service links would override <SERVICE>_PORT with tcp://...
    assert spec["enableServiceLinks"] is False

    # the migration runs first, with the service's own image, command and configuration
    (migrate,) = spec["initContainers"]
    assert migrate["image"] == serve["image"]
    assert migrate.get("command") == serve.get("command")
    assert {"name": f"{prefix}MIGRATE_ONLY", "value": "true"} in migrate["env"]
    assert [e for e in migrate["env"] if e["name"] != f"{prefix}MIGRATE_ONLY"] == serve["env"]

    assert any(selects(p["spec"]["selector"], labels)
               for p in find(docs, "PodDisruptionBudget")), f"{name}: no PodDisruptionBudget"
    spread = {t["topologyKey"] for t in spec["topologySpreadConstraints"]
              if selects(t["labelSelector"], labels)}
    assert spread >= {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}

    policies = [p for p in find(docs, "NetworkPolicy")
                if selects(p["spec"]["podSelector"], labels)]
    types = {t for p in policies for t in p["spec"]["policyTypes"]}
    assert types >= {"Ingress", "Egress"}, f"{name}: no NetworkPolicy for both directions"

    # the autoscaler scales what runs the pods: the Rollout in prod, else the Deployment
    rollouts = find(docs, "Rollout", name)
    if overlay == "prod":
        assert len(rollouts) == 1, f"{name}: prod releases every service through a Rollout"
        assert rollouts[0]["spec"]["workloadRef"] == {
            "apiVersion": "apps/v1", "kind": "Deployment", "name": name,
            "scaleDown": "progressively"}
        target = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": name}
    else:
        assert not rollouts
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    scalers = [d for d in find(docs, "HorizontalPodAutoscaler") + find(docs, "ScaledObject")
               if d["spec"]["scaleTargetRef"] == target]
    assert len(scalers) == 1, f"{name}: expected one autoscaler on {target}, got {len(scalers)}"
    scaler = scalers[0]
    unit = UNITS[service]
    if unit.consumers:
        # message-driven: KEDA on every durable consumer's lag (and CPU for its HTTP side)
        assert scaler["kind"] == "ScaledObject"
        lag = {(t["metadata"]["stream"], t["metadata"]["consumer"])
               for t in scaler["spec"]["triggers"] if t["type"] == "nats-jetstream"}
        assert lag == {(c.stream, c.name) for c in unit.consumers}
        assert any(t["type"] == "cpu" for t in scaler["spec"]["triggers"])
    else:
        assert scaler["kind"] == "HorizontalPodAutoscaler"
        assert [m["resource"]["name"] for m in scaler["spec"]["metrics"]] == ["cpu"]


# -- the network: exactly the architecture's flows ----------------------------------------

def _peer_selects(peer: Obj, labels: dict[str, str]) -> bool:
    # Peers inside the namespace only (a namespaceSelector names another namespace).
    return "namespaceSelector" not in peer and "ipBlock" not in peer \
        and selects(peer["podSelector"], labels)


def _allows(rules: list[Obj], side: str, labels: dict[str, str], port: int) -> bool:
    for rule in rules:
        ports = {p["port"] for p in rule.get("ports", [])}
        if ports and port not in ports:
            continue
        peers = rule.get(side)
        if peers is None or any(_peer_selects(p, labels) for p in peers):
            return True
    return False


def http_flows(docs: tuple[Obj, ...]) -> set[tuple[str, str]]:
    """(from, to) pairs of workloads whose policies let the first reach the second's :8000
    (egress on the caller's side and ingress on the callee's)."""
    pods = {w["metadata"]["name"]: pod_labels(w) for w in workloads(docs)}
    policies = find(docs, "NetworkPolicy")

    def rules(labels: dict[str, str], kind: str) -> list[Obj] | None:
        mine = [p for p in policies if selects(p["spec"]["podSelector"], labels)
                and kind.capitalize() in p["spec"]["policyTypes"]]
        if not mine:
            return None  # unrestricted in that direction
        return [r for p in mine for r in p["spec"].get(kind, [])]

    flows = set()
    for src, src_labels in pods.items():
        egress = rules(src_labels, "egress")
        for dst, dst_labels in pods.items():
            if src == dst:
                continue
            ingress = rules(dst_labels, "ingress")
            out_ok = egress is None or _allows(egress, "to", dst_labels, HTTP)
            in_ok = ingress is None or _allows(ingress, "from", src_labels, HTTP)
            if out_ok and in_ok and HTTP in _ports(docs, dst):
                flows.add((src, dst))
    return flows


def _ports(docs: tuple[Obj, ...], name: str) -> set[int]:
    (w,) = [w for w in workloads(docs) if w["metadata"]["name"] == name]
    return {p["containerPort"] for c in pod_spec(w)["containers"]  # type: ignore[index]
            for p in c.get("ports", [])}


def architecture_flows() -> set[tuple[str, str]]:
    """docs/architecture.md: the edge routes to every public API; every service fetches
    identity's JWKS; orders asks identity, catalog and payments (a payment method, or a card
    exchanged for one), cart asks catalog and orders, the storefront (the BFF) asks every
    service whose data its pages compose."""
    names = [k8s_name(s) for s in services()]
    flows = {("edge", n) for n in names}
    flows |= {(n, "identity") for n in names if n != "identity"}
    flows |= {("orders", "catalog"), ("orders", "payments"), ("cart", "catalog"),
              ("cart", "orders")}
    flows |= {("storefront", n) for n in ("catalog", "inventory", "cart", "orders", "payments",
                                          "shipping", "order-history")}
    return flows


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_network_allows_exactly_the_architectures_flows(overlay: str) -> None:
    assert http_flows(render(overlay)) == architecture_flows()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_url_a_service_is_given_is_a_flow_it_is_allowed(overlay: str) -> None:
    docs = render(overlay)
    flows = http_flows(docs)
    for service in services():
        config = one(docs, "ConfigMap", f"{k8s_name(service)}-config")["data"]
        for var, value in config.items():
            m = re.fullmatch(r"https?://([a-z0-9-]+):(\d+)(/.*)?", value)
            if m and int(m.group(2)) == HTTP:
                assert (k8s_name(service), m.group(1)) in flows, f"{var}={value}"


def test_a_removed_rule_is_noticed() -> None:
    """The flow computation is not vacuous: without cart's egress to orders, the flow goes."""
    import copy

    docs = copy.deepcopy(render("base"))
    policy = one(docs, "NetworkPolicy", "cart")
    for rule in policy["spec"]["egress"]:
        rule["to"] = [p for p in rule.get("to", [])
                      if p.get("podSelector", {}).get("matchLabels", {})
                      .get("app.kubernetes.io/name") != "orders"]
    assert ("cart", "orders") not in http_flows(docs)
    assert ("cart", "catalog") in http_flows(docs)


# -- secrets ------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_values_and_every_referenced_secret_is_documented(overlay: str) -> None:
    docs = render(overlay)
    assert not find(docs, "Secret"), "secret values never live in the repository"
    text = str(docs)
    names = set(re.findall(r"'secretKeyRef': \{'name': '([^']+)'", text))
    names |= set(re.findall(r"'passwordSecret': \{'name': '([^']+)'", text))
    assert names
    guide = (REPO / "docs" / "deploy.md").read_text()

    def documented(name: str) -> bool:
        # one per service ("<service>-db") or one of its own ("identity-signing-key")
        return name in guide or any(
            name.startswith(k8s_name(s) + "-")
            and f"<service>{name[len(k8s_name(s)):]}" in guide for s in services())

    undocumented = sorted(n for n in names if not documented(n))
    assert not undocumented, f"Secrets not in docs/deploy.md: {undocumented}"


def test_simulators_run_in_dev_only() -> None:
    for simulator in ("payments-provider", "mailsink"):
        assert find(render("dev"), "Deployment", simulator)
        assert not find(render("prod"), "Deployment", simulator)
