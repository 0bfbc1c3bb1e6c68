"""Each service's Kubernetes objects, from one template and the service's ``Unit``.

Every service gets the same shape: ServiceAccount, ConfigMap, Services, a Deployment whose
init container migrates with the service's own command, probes on the chassis's health
endpoints, a PodDisruptionBudget, topology spread, a locked-down securityContext, a
NetworkPolicy that allows only the flows the architecture has, and an autoscaler: a
HorizontalPodAutoscaler on CPU for a service only called over HTTP, a KEDA ScaledObject on
JetStream consumer lag (and CPU) for one that consumes messages. Secrets are referenced by
name only; their values never enter the repository.
"""

from __future__ import annotations

from typing import Any

from mercato.deploy.units import (
    DATABASE_CLUSTER,
    HTTP_PORT,
    NATS_ACCOUNT,
    NATS_MONITORING,
    NATS_SERVICE,
    Unit,
    callers,
    k8s_name,
    units,
)

PART_OF = "mercato"
EDGE = "edge"
OTEL_COLLECTOR = "otel-collector"
OTLP_HTTP_PORT = 4318
RUN_AS = 10001
# A Python process uses at most one core: scale out well before it is busy, whatever the
# request says (AverageValue, not a percentage of the request).
SCALE_AT_CPU = "600m"
MIN_REPLICAS = 2
MAX_REPLICAS = 10
# Messages waiting per instance before KEDA adds one (num_pending + num_ack_pending).
LAG_PER_INSTANCE = 50
# The engines the laptop runs (the wheels in uv.lock), as images.
POSTGRES_IMAGE = "ghcr.io/cloudnative-pg/postgresql:18.6"
IMAGE_REGISTRY = "mercato"  # overlays point this at the real registry (kustomize `images`)

Obj = dict[str, Any]


def labels(name: str, component: str = "service") -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF,
            "app.kubernetes.io/component": component}


def selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF}


def meta(name: str, unit_name: str, component: str = "service") -> Obj:
    return {"name": name, "labels": labels(unit_name, component)}


def image(unit: Unit) -> str:
    return f"{IMAGE_REGISTRY}/{unit.name}"


# -- configuration ------------------------------------------------------------------------

def config_map(unit: Unit) -> Obj:
    p = unit.prefix
    data = {
        f"{p}ENVIRONMENT": "production",
        f"{p}HOST": "0.0.0.0",
        f"{p}PORT": str(HTTP_PORT),
        # In the cluster, Services are found by DNS; the NATS KV registry is the laptop's.
        f"{p}REGISTER_INSTANCE": "false",
        f"{p}LOG_LEVEL": "info",
    }
    if unit.service != "identity":  # identity checks tokens with its own keys
        data[f"{p}JWKS_URL"] = f"http://identity:{HTTP_PORT}/.well-known/jwks.json"
    data |= {p + key: value for key, value in unit.config.items()}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(f"{unit.name}-config",
                                                                       unit.name),
            "data": data}


def env(unit: Unit) -> list[Obj]:
    """The secret part of the environment. The database URL is assembled from the password
    in ``<name>-db`` (the same basic-auth Secret CloudNativePG sets the role's password
    from), so one Secret holds it; it must be URL-safe (hex or base64url)."""
    p = unit.prefix

    def secret(var: str, name: str, key: str) -> Obj:
        return {"name": var, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}

    role = unit.service
    items = [
        {"name": f"{p}INSTANCE_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        secret(f"{p}DATABASE_PASSWORD", f"{unit.name}-db", "password"),
        {"name": f"{p}DATABASE_URL",
         "value": f"postgresql+asyncpg://{role}:$({p}DATABASE_PASSWORD)@{DATABASE_CLUSTER}-rw"
                  f":5432/{role}"},
        # The broker's address (tls://nats:4222 in production) and the service's own NKey:
        # the broker knows only its public key, with the service's permissions
        # (`mercato deploy credentials` makes both halves).
        secret(f"{p}NATS_URL", f"{unit.name}-nats", "url"),
        secret(f"{p}NATS_NKEY_SEED", f"{unit.name}-nats", "nkey-seed"),
        # The key that signs this service's calls to others (chassis.service_identity), and
        # every service's public key, which it checks its callers against.
        secret(f"{p}REGISTRY_SIGNING_KEY", f"{unit.name}-service-key", "signing-key"),
        {"name": f"{p}REGISTRY_TRUSTED_KEYS",
         "valueFrom": {"configMapKeyRef": {"name": "service-keys", "key": "trusted"}}},
    ]
    items += [secret(p + var, name, key) for var, (name, key) in unit.secrets.items()]
    return items


# -- workload -----------------------------------------------------------------------------

def container_security() -> Obj:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "privileged": False, "capabilities": {"drop": ["ALL"]}}


def pod_security() -> Obj:
    return {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}}


def topology_spread(name: str) -> list[Obj]:
    """One instance per node and zone where the cluster allows it; never unschedulable for it.
    ``pod-template-hash`` keeps a rollout's new pods from counting the old ones."""
    return [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": selector(name)},
             "matchLabelKeys": ["pod-template-hash"]}
            for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")]


def probe(path: str, *, period: int, failures: int, timeout: int = 2) -> Obj:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period,
            "timeoutSeconds": timeout, "failureThreshold": failures}


def resources(unit: Unit) -> Obj:
    return {"requests": {"cpu": unit.cpu_request, "memory": unit.memory_request},
            "limits": {"cpu": "1", "memory": unit.memory_limit}}


def tmp_volume_mount() -> Obj:
    # The container's own /tmp on an emptyDir: the root filesystem is read-only.
    return {"name": "tmp", "mountPath": "/tmp"}  # noqa: S108


def deployment(unit: Unit) -> Obj:
    env_from = [{"configMapRef": {"name": f"{unit.name}-config"}}]
    common = {"image": image(unit), "imagePullPolicy": "IfNotPresent",
              "envFrom": env_from, "securityContext": container_security(),
              "resources": resources(unit), "volumeMounts": [tmp_volume_mount()]}
    migrate = {"name": "migrate", **common,
               "env": [*env(unit), {"name": f"{unit.prefix}MIGRATE_ONLY", "value": "true"}]}
    serve = {
        "name": unit.name, **common,
        "env": env(unit),
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        # Migrations ran in the init container; start-up is the import and the first
        # connections: 60 s at most before liveness takes over.
        "startupProbe": probe("/health/live", period=2, failures=30),
        "livenessProbe": probe("/health/live", period=10, failures=3),
        # Ready = its database answers (and NATS, see the chassis); out of the Service after
        # two failures, back after one success.
        "readinessProbe": probe("/health/ready", period=5, failures=2, timeout=3),
        # Endpoints and the edge's DNS notice the pod is going before it stops accepting.
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(unit.name, unit.name),
        "spec": {
            # No replicas: the autoscaler owns the count (an apply would reset it otherwise).
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(unit.name)},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels(unit.name),
                             "annotations": {"prometheus.io/scrape": "true",
                                             "prometheus.io/port": str(HTTP_PORT),
                                             "prometheus.io/path": "/metrics"}},
                "spec": {
                    "serviceAccountName": unit.name,
                    "automountServiceAccountToken": False,
                    # Service links would set CATALOG_PORT=tcp://... for a Service named
                    # catalog: the service's own port setting.
                    "enableServiceLinks": False,
                    "securityContext": pod_security(),
                    "terminationGracePeriodSeconds": 30,
                    "topologySpreadConstraints": topology_spread(unit.name),
                    "initContainers": [migrate],
                    "containers": [serve],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    }


def service_account(unit: Unit) -> Obj:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(unit.name, unit.name),
            "automountServiceAccountToken": False}


def services(unit: Unit) -> list[Obj]:
    port = [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}]
    found = [{"apiVersion": "v1", "kind": "Service", "metadata": meta(unit.name, unit.name),
              "spec": {"selector": selector(unit.name), "ports": port}}]
    if unit.public:
        # The edge's clusters resolve this name to every ready pod (STRICT_DNS), so Envoy
        # balances and health-checks per instance, not per virtual IP.
        found.append({"apiVersion": "v1", "kind": "Service",
                      "metadata": meta(f"{unit.name}-pods", unit.name),
                      "spec": {"clusterIP": "None", "selector": selector(unit.name),
                               "ports": port}})
    return found


def disruption_budget(unit: Unit) -> Obj:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": meta(unit.name, unit.name),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(unit.name)},
                     "unhealthyPodEvictionPolicy": "AlwaysAllow"}}


# -- autoscaling --------------------------------------------------------------------------

def autoscaler(unit: Unit) -> Obj:
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": unit.name}
    if not unit.message_driven:
        return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": meta(unit.name, unit.name),
                "spec": {"scaleTargetRef": target, "minReplicas": MIN_REPLICAS,
                         "maxReplicas": MAX_REPLICAS,
                         "metrics": [{"type": "Resource", "resource": {
                             "name": "cpu",
                             "target": {"type": "AverageValue",
                                        "averageValue": SCALE_AT_CPU}}}]}}
    triggers: list[Obj] = [{
        "type": "nats-jetstream",
        "metadata": {"natsServerMonitoringEndpoint": NATS_MONITORING,
                     "account": NATS_ACCOUNT, "stream": c.stream, "consumer": c.name,
                     "lagThreshold": str(LAG_PER_INSTANCE), "activationLagThreshold": "0"},
    } for c in unit.consumers]
    # Its HTTP side still scales on CPU; KEDA owns the HPA it makes from these triggers.
    triggers.append({"type": "cpu", "metricType": "AverageValue",
                     "metadata": {"value": SCALE_AT_CPU}})
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": meta(unit.name, unit.name),
            "spec": {"scaleTargetRef": target, "minReplicaCount": MIN_REPLICAS,
                     "maxReplicaCount": MAX_REPLICAS, "pollingInterval": 15,
                     "cooldownPeriod": 300, "triggers": triggers}}


# -- network ------------------------------------------------------------------------------

def _pods(name: str, component: str = "service") -> Obj:
    return {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name,
                                            "app.kubernetes.io/part-of": PART_OF,
                                            "app.kubernetes.io/component": component}}}


def _tcp(*ports: int | str) -> list[Obj]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def dns_egress() -> Obj:
    return {"to": [{"namespaceSelector": {}, "podSelector": {
                "matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}


def monitoring_ingress(port: int | str) -> Obj:
    return {"from": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "monitoring"}}}],
            "ports": _tcp(port)}


def network_policy(unit: Unit) -> Obj:
    ingress: list[Obj] = []
    if unit.public:
        ingress.append({"from": [_pods(EDGE, EDGE)], "ports": _tcp(HTTP_PORT)})
    peers = [_pods(u.name) for u in callers(unit.service)]
    if peers:
        ingress.append({"from": peers, "ports": _tcp(HTTP_PORT)})
    ingress.append(monitoring_ingress(HTTP_PORT))
    egress: list[Obj] = [
        dns_egress(),
        {"to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": DATABASE_CLUSTER}}}],
         "ports": _tcp(5432)},
        {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": NATS_SERVICE}}}],
         "ports": _tcp(4222)},
    ]
    called = sorted(set(unit.calls) | ({"identity"} if unit.service != "identity" else set()))
    if called:
        egress.append({"to": [_pods(k8s_name(s)) for s in called], "ports": _tcp(HTTP_PORT)})
    for ext in unit.external:
        # Base: the dev stand-in in the namespace; the prod overlay opens the real endpoint.
        egress.append({"to": [_pods(ext.simulator, "simulator")], "ports": _tcp(ext.port)})
    # Traces to the OpenTelemetry Collector (deploy/observability; prod runs it).
    egress.append({"to": [_pods(OTEL_COLLECTOR, "observability")],
                   "ports": _tcp(OTLP_HTTP_PORT)})
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": meta(unit.name, unit.name),
            "spec": {"podSelector": {"matchLabels": selector(unit.name)},
                     "policyTypes": ["Ingress", "Egress"], "ingress": ingress,
                     "egress": egress}}


def objects(unit: Unit) -> list[Obj]:
    return [service_account(unit), config_map(unit), *services(unit), deployment(unit),
            disruption_budget(unit), autoscaler(unit), network_policy(unit)]


# -- the database: one CloudNativePG cluster, a role and a database per service -----------

def database_objects() -> list[Obj]:
    roles = [{"name": u.service, "ensure": "present", "login": True, "inherit": True,
              "connectionLimit": 60, "passwordSecret": {"name": f"{u.name}-db"}}
             for u in units()]
    cluster = {
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": DATABASE_CLUSTER,
                     "labels": {"app.kubernetes.io/part-of": PART_OF,
                                "app.kubernetes.io/component": "database"}},
        "spec": {
            "instances": 3,
            "imageName": POSTGRES_IMAGE,
            # A commit is acknowledged once one standby has it too: a failover loses no
            # committed order (the outbox is the source of truth for everything else).
            "postgresql": {"synchronous": {"method": "any", "number": 1},
                           "parameters": {"max_connections": "400"},
                           # As on the laptop, each role reaches its own database alone
                           # (database = role name), and no other.
                           "pg_hba": ["host sameuser all all scram-sha-256",
                                      "host all " + ",".join(u.service for u in units())
                                      + " all reject"]},
            "bootstrap": {"initdb": {"database": "app", "owner": "app"}},
            "managed": {"roles": roles},
            "storage": {"size": "20Gi"},
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                          "limits": {"cpu": "2", "memory": "2Gi"}},
            "affinity": {"topologyKey": "kubernetes.io/hostname"},
            "monitoring": {"enablePodMonitor": False},
        },
    }
    databases = [{"apiVersion": "postgresql.cnpg.io/v1", "kind": "Database",
                  "metadata": {"name": f"{u.name}-db",
                               "labels": {"app.kubernetes.io/part-of": PART_OF,
                                          "app.kubernetes.io/component": "database"}},
                  "spec": {"name": u.service, "owner": u.service,
                           "cluster": {"name": DATABASE_CLUSTER}, "ensure": "present",
                           "databaseReclaimPolicy": "retain"}}
                 for u in units()]
    return [cluster, *databases]


# -- prod: each Deployment runs through an Argo Rollouts canary ---------------------------

ANALYSIS = "mercato-canary"


def rollout(unit: Unit) -> Obj:
    """A canary over the Deployment (``workloadRef``): Argo Rollouts takes over its pods,
    shifts replicas 25 % -> 50 % -> 100 % and aborts on the analysis of the canary's own
    metrics (the pods of the new template hash) against the stable pods' (the old hash), as
    `mercato release` does on the laptop."""
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": meta(unit.name, unit.name),
        "spec": {
            "revisionHistoryLimit": 5,
            "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": unit.name,
                            "scaleDown": "progressively"},
            "strategy": {"canary": {
                "maxSurge": "25%", "maxUnavailable": 0,
                "analysis": {"templates": [{"templateName": ANALYSIS}], "startingStep": 1,
                             "args": [{"name": "service", "value": unit.service},
                                      {"name": "canary-hash",
                                       "valueFrom": {"podTemplateHashValue": "Latest"}},
                                      {"name": "stable-hash",
                                       "valueFrom": {"podTemplateHashValue": "Stable"}}]},
                "steps": [{"setWeight": 25}, {"pause": {"duration": "5m"}},
                          {"setWeight": 50}, {"pause": {"duration": "5m"}},
                          {"setWeight": 100}],
            }},
        },
    }
