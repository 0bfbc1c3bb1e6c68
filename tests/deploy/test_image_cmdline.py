"""Each image's command line starts its service from a plain virtual environment, the way
the image would, against a throw-away PostgreSQL and NATS.

No image is built here (no container engine runs on this machine or in CI), so the test
takes the image apart instead: the Dockerfile's own `uv sync` flags build one environment per
service (only that service's dependency closure, as in its image: a missing dependency
fails here), every editable path must lie inside what the final stage copies, and the
final stage's ENV and CMD run it with the service's ConfigMap from the Kubernetes base, in
the order the pod runs them: the migrate-only init container, then the service, then the
image's HEALTHCHECK command. The durable consumers the running services create must be the
ones KEDA scales on. All nine services run at once, as in a cluster.

Cost: every process start imports a whole service (1-2 s of CPU). The init container runs
for one service of each entry-point shape (a module calling ``run_service``, identity's
CLI, order_history's ``main``); a cheap check holds the others to the first shape, and each
of them still migrates its fresh database through its own command. About 45 s on an idle
2-core machine (venvs ~10 s, init containers ~8 s, nine starts ~20 s).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nats
import nkeys
import pytest
from chassis.registry_keys import new_key_pair
from deploy_manifests import (
    REPO,
    dockerfile_stages,
    env_instructions,
    exec_form,
    final_stage,
    find,
    k8s_name,
    one,
    render,
    services,
)
from mercato.runtime.paths import free_port
from mercato.testing.infra import PgServer

pytestmark = pytest.mark.integration

UV = REPO / ".tools" / "bin" / "uv"
START_TIMEOUT_S = 120.0
# One service per shape of `python -m <service>` (see the module docstring).
ENTRY_SHAPES = {"catalog": "run_service(", "identity": "main()", "order_history": "main(sys.argv[1:])"}


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def sync_command(service: str) -> list[str]:
    (run,) = [r for s in dockerfile_stages().values() for r in s.all("RUN") if "uv sync" in r]
    flags = run.split("uv sync", 1)[1].split()
    return [str(UV), "sync", *(f.replace('"$SERVICE"', service) for f in flags),
            "--python", sys.executable, "--quiet"]


def build_venv(service: str, root: Path) -> Path:
    venv = root / service
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never",
           # bytecode and file copies change nothing the test looks at, and cost 10 s each
           "UV_COMPILE_BYTECODE": "0", "UV_LINK_MODE": "hardlink"}
    done = subprocess.run(sync_command(service), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{service}: {' '.join(sync_command(service))}\n{done.stderr}"
    return venv


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("image-venvs")
    with ThreadPoolExecutor(max_workers=3) as pool:
        built = dict(zip(services(), pool.map(lambda s: build_venv(s, root), services()),
                         strict=True))
    return built


def image_paths(service: str) -> list[Path]:
    """What the final stage copies from the build stage's /app (the repository there)."""
    paths = []
    for rest in final_stage().all("COPY"):
        words = rest.split()
        if words[0] == "--from=build" and words[1].startswith("/app/"):
            paths.append(REPO / words[1].removeprefix("/app/")
                         .replace("${PACKAGE_DIR}", f"services/{service}")
                         .replace("${SERVICE}", service))
    return paths


def test_each_environment_holds_only_what_its_image_copies(venvs: dict[str, Path]) -> None:
    for service, venv in venvs.items():
        (site,) = venv.glob("lib/python*/site-packages")
        editable = [Path(line.strip()) for pth in site.glob("*.pth")
                    for line in pth.read_text().splitlines() if line.startswith("/")]
        assert editable, f"{service}: no workspace package installed"
        copied = image_paths(service)
        outside = [p for p in editable if not any(p.is_relative_to(c) for c in copied)]
        assert not outside, f"{service}: the image lacks {outside}"
        # the service's own dependency closure only: no other service, no runtime, no tests
        others = {s for s in services() if s != service} | {"mercato", "pytest"}
        installed = {d.name.split("-")[0] for d in site.glob("*.dist-info")}
        assert not installed & others, f"{service}: also installs {installed & others}"


def image_env(service: str, venv: Path) -> dict[str, str]:
    final = final_stage()
    env = {"HOME": "/nonexistent", "LANG": "C.UTF-8"}
    for key, value in env_instructions(final).items():
        value = value.replace("/app/.venv", str(venv)).replace("$PATH", os.environ["PATH"])
        env[key] = value.replace("${SERVICE}", service)
    return env


def pod_env(service: str, port: int, database_url: str, nats_url: str) -> dict[str, str]:
    """The service's ConfigMap from the Kubernetes base, and what its Secrets would give."""
    name, prefix = k8s_name(service), service.upper() + "_"
    env = dict(one(render("base"), "ConfigMap", f"{name}-config")["data"])
    env |= {f"{prefix}HOST": "127.0.0.1", f"{prefix}PORT": str(port),
            f"{prefix}INSTANCE_ID": f"{name}-test-0", f"{prefix}DATABASE_URL": database_url,
            f"{prefix}NATS_URL": nats_url}
    deployment = one(render("base"), "Deployment", name)
    for var in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "valueFrom" in var and var["name"] not in env and "secretKeyRef" in var["valueFrom"]:
            if var["name"].endswith("NATS_NKEY_SEED"):
                env[var["name"]] = nkeys.encode_seed(os.urandom(32),
                                                     nkeys.PREFIX_BYTE_USER).decode()
            elif var["name"].endswith("REGISTRY_SIGNING_KEY"):
                env[var["name"]] = new_key_pair()[0]
            elif not var["name"].endswith("DATABASE_PASSWORD"):
                env[var["name"]] = secrets.token_urlsafe(32)
    return env


def in_repo(argv: list[str]) -> list[str]:
    """The image's /app is the repository's layout (the Dockerfile copies it as it is)."""
    return [str(REPO / a.removeprefix("/app/")) if a.startswith("/app/") else a for a in argv]


def live(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture
def databases(pg_server: PgServer) -> Iterator[dict[str, str]]:
    created = {s: f"t_img_{s}_{secrets.token_hex(4)}" for s in services()}
    urls = {s: pg_server.create_database(name) for s, name in created.items()}
    try:
        yield urls
    finally:
        for name in created.values():
            pg_server.drop_database(name)


async def durable_consumers(nats_url: str) -> set[tuple[str, str]]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        found = set()
        for stream in await js.streams_info():
            if stream.config.name.startswith("KV_"):
                continue
            for consumer in await js.consumers_info(stream.config.name):
                # The session's NATS is shared with other tests' streams and consumers.
                name = consumer.config.durable_name
                if name and any(name.startswith(f"{s}-") for s in services()):
                    found.add((stream.config.name, consumer.config.durable_name))
        return found
    finally:
        await nc.close()


def test_every_entry_point_has_a_shape_whose_init_container_is_tested() -> None:
    for service in services():
        main = (REPO / "services" / service / "src" / service / "__main__.py").read_text()
        shape = ENTRY_SHAPES.get(service, ENTRY_SHAPES["catalog"])
        assert shape in main, f"{service}: a new entry-point shape; add it to ENTRY_SHAPES"
    assert "run_service(" in (REPO / "services/identity/src/identity/entrypoints/cli.py").read_text()


def test_every_image_command_migrates_then_serves(venvs: dict[str, Path],
                                                  databases: dict[str, str], nats_url: str,
                                                  pg_server: PgServer) -> None:
    cmd = in_repo(exec_form(final_stage().all("CMD")[0]))
    health = in_repo(exec_form(final_stage().all("HEALTHCHECK")[0].split(" CMD ", 1)[1]))
    ports = {s: free_port() for s in services()}
    envs = {s: image_env(s, venvs[s]) | pod_env(s, ports[s], databases[s], nats_url)
            for s in services()}

    # 1. the init container: the same command with <SERVICE>_MIGRATE_ONLY, exits 0 migrated
    def migrate(service: str) -> None:
        env = envs[service] | {service.upper() + "_MIGRATE_ONLY": "true"}
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=180, check=False)
        assert done.returncode == 0, f"{service} migrate-only: {done.stderr[-2000:]}"
        assert not live(ports[service]), f"{service}: migrate-only must not serve"
        db = databases[service].rsplit("/", 1)[1]
        assert pg_server.psql("SELECT count(*) FROM alembic_version", database=db).strip() == "1"

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(migrate, ENTRY_SHAPES))

    # 2. the service itself, all at once
    procs = {s: subprocess.Popen(cmd, cwd=REPO, env=envs[s], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, start_new_session=True)
             for s in services()}
    try:
        for service, proc in procs.items():
            wait_for(lambda s=service, p=proc: live(ports[s]) or p.poll() is not None,
                     START_TIMEOUT_S, f"{service} /health/live")
            assert proc.poll() is None, \
                f"{service} exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
            # 3. the image's HEALTHCHECK, as Docker runs it in the container
            check = subprocess.run(health, cwd=REPO, env=envs[service], capture_output=True,
                                   text=True, timeout=30, check=False)
            assert check.returncode == 0, f"{service} HEALTHCHECK: {check.stderr}"

        # 4. the consumers KEDA scales on are the ones the services really read
        expected = {(t["metadata"]["stream"], t["metadata"]["consumer"])
                    for so in find(render("base"), "ScaledObject")
                    for t in so["spec"]["triggers"] if t["type"] == "nats-jetstream"}
        wait_for(lambda: asyncio.run(durable_consumers(nats_url)) >= expected, 60,
                 "every ScaledObject's consumer to exist", interval=0.5)
        assert asyncio.run(durable_consumers(nats_url)) == expected
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {s: p.wait(timeout=30) for s, p in procs.items()}
    # SIGTERM drains and exits 0, as Kubernetes expects within the grace period
    assert codes == dict.fromkeys(services(), 0), codes
