"""The local alert evaluator: Debian's Prometheus (from ``mercato.toolfetch``, the binary
the rules' tests use) run by the supervisor beside the console when it is installed
(``make observability-tools``). It scrapes every service instance's ``/metrics`` (targets
rewritten from the supervisor's state on every change) every 5 s and evaluates the very
rule files of ``deploy/observability/prometheus/rules``; the console reads its alerts and
queries. Its data lives in the home, kept 2 hours (``--storage.tsdb.retention.time``).

``MERCATO_ALERT_FOR_SCALE`` (default 1) multiplies every rule's ``for:``, so tests and demos
can see an alert fire in seconds instead of minutes; the expressions are unchanged.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from mercato.runtime.paths import Home, write_atomic
from mercato.runtime.services import repo_root

FOR_SCALE_ENV = "MERCATO_ALERT_FOR_SCALE"
JOB = "mercato-pods"  # the production job's name: MetricsTargetDown reads it
INTERVAL_S = 5
RETENTION = "2h"
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def binary() -> Path | None:
    from mercato.toolfetch import DEFAULT_DIR, ENV_DIR

    directory = Path(os.environ.get(ENV_DIR) or DEFAULT_DIR)
    path = directory / "prometheus"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def rules_dir() -> Path:
    return repo_root() / "deploy" / "observability" / "prometheus" / "rules"


def seconds(duration: str) -> float:
    total = 0.0
    for value, unit in _DURATION.findall(duration):
        total += int(value) * _UNIT_S[unit]
    return total


def scaled_rules(text: str, scale: float) -> str:
    """A rule file with every ``for:`` multiplied by ``scale`` (at least 1 s)."""
    doc = yaml.safe_load(text)
    if scale != 1.0:
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                if "for" in rule:
                    rule["for"] = f"{max(1, round(seconds(str(rule['for'])) * scale))}s"
    return yaml.safe_dump(doc, sort_keys=False)


def for_scale() -> float:
    raw = os.environ.get(FOR_SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    value = float(raw)
    if not 0 < value <= 1:
        raise ValueError(f"{FOR_SCALE_ENV} must be in (0, 1], got {raw}")
    return value


def directory(home: Home) -> Path:
    return home.root / "prometheus"


def targets_file(home: Home) -> Path:
    return directory(home) / "targets.json"


def prepare(home: Home, port: int, scale: float) -> list[str]:
    """Write the configuration and the (scaled) rules; return Prometheus's argv."""
    exe = binary()
    assert exe is not None
    d = directory(home)
    (d / "rules").mkdir(parents=True, exist_ok=True)
    for old in (d / "rules").glob("*.yaml"):
        old.unlink()
    for src in sorted(rules_dir().glob("*.rules.yaml")):
        write_atomic(d / "rules" / src.name, scaled_rules(src.read_text(), scale))
    if not targets_file(home).exists():
        write_atomic(targets_file(home), "[]\n")
    config = {
        "global": {"scrape_interval": f"{INTERVAL_S}s", "evaluation_interval": f"{INTERVAL_S}s",
                   "scrape_timeout": "4s"},
        "rule_files": [str(d / "rules" / "*.yaml")],
        "scrape_configs": [{"job_name": JOB, "file_sd_configs": [
            {"files": [str(targets_file(home))], "refresh_interval": f"{INTERVAL_S}s"}]}],
    }
    write_atomic(d / "prometheus.yml", yaml.safe_dump(config, sort_keys=False))
    # Basic auth on every endpoint (its API would otherwise be open to every local user);
    # Prometheus takes only bcrypt hashes.
    import bcrypt

    from mercato.runtime.telemetry import PROMETHEUS_USER, prometheus_password

    hashed = bcrypt.hashpw(prometheus_password(home).encode(), bcrypt.gensalt(rounds=10))
    write_atomic(d / "web.yml", yaml.safe_dump(
        {"basic_auth_users": {PROMETHEUS_USER: hashed.decode()}}), mode=0o600)
    return [str(exe), f"--config.file={d / 'prometheus.yml'}",
            f"--storage.tsdb.path={d / 'data'}",
            f"--storage.tsdb.retention.time={RETENTION}",
            f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={d / 'web.yml'}",
            "--log.format=json",
            "--log.level=warn"]


def write_targets(home: Home, processes: dict[str, Any]) -> None:
    """Every service instance, labelled by instance (never `service`: the services' series
    carry their own). One that is stopped stays a target: its `up` reads 0, which is what
    MetricsTargetDown watches."""
    groups = [{"targets": [f"127.0.0.1:{p['port']}"],
               "labels": {"instance": name, "pod": name}}
              for name, p in sorted(processes.items())
              if p.get("kind") == "service" and p.get("port")]
    text = json.dumps(groups, indent=1) + "\n"
    path = targets_file(home)
    try:
        if path.read_text() == text:
            return
    except FileNotFoundError:
        pass
    if path.parent.exists():
        write_atomic(path, text)
