"""What the deploy tests read: the rendered overlays, the services the code defines, the
Dockerfile's stages. Everything is read from the repository as a user's tools would."""

from __future__ import annotations

import functools
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from mercato.runtime.services import SERVICES

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
BIN = Path(sys.executable).parent  # the venv's tools: kubectl, hadolint, actionlint
POD_KINDS = ("Deployment", "StatefulSet", "Rollout")

Obj = dict[str, Any]


def services() -> list[str]:
    """Every service the repository has: the runtime's list and every package under
    services/ (a new folder without a runtime entry still counts)."""
    folders = {p.parent.name for p in (REPO / "services").glob("*/pyproject.toml")}
    return sorted(set(SERVICES) | folders)


def k8s_name(service: str) -> str:
    return service.replace("_", "-")


def overlays() -> list[str]:
    return sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))


@functools.cache
def render(overlay: str) -> tuple[Obj, ...]:
    """``kubectl kustomize`` of an overlay (or "base"), as a tuple of documents."""
    path = K8S / "base" if overlay == "base" else K8S / "overlays" / overlay
    done = subprocess.run([str(BIN / "kubectl"), "kustomize", str(path)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, f"kubectl kustomize {path} failed:\n{done.stderr}"
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def find(docs: tuple[Obj, ...], kind: str, name: str | None = None) -> list[Obj]:
    return [d for d in docs if d["kind"] == kind
            and (name is None or d["metadata"]["name"] == name)]


def one(docs: tuple[Obj, ...], kind: str, name: str) -> Obj:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(workload: Obj) -> Obj | None:
    template = workload["spec"].get("template")
    return template["spec"] if template else None


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """matchLabels semantics (all mercato's selectors use only matchLabels)."""
    assert set(selector) <= {"matchLabels"}, f"unexpected selector {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


# -- Dockerfile --------------------------------------------------------------------------

@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, rest)

    def all(self, instruction: str) -> list[str]:
        return [rest for ins, rest in self.instructions if ins == instruction]


def dockerfile_stages(path: Path = DEPLOY / "Dockerfile") -> dict[str, Stage]:
    """The Dockerfile's stages by name, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in lines:
        instruction, _, rest = line.strip().partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            current = stages[name] = Stage(name, words[0])
        elif current is not None:
            current.instructions.append((instruction, rest.strip()))
    return stages


def final_stage() -> Stage:
    return list(dockerfile_stages().values())[-1]


def exec_form(rest: str) -> list[str]:
    """A JSON-array (exec form) instruction argument, HEALTHCHECK's CMD included."""
    import json

    if rest.upper().startswith("CMD "):
        rest = rest[4:]
    parsed = json.loads(rest.strip())
    assert isinstance(parsed, list), f"not exec form: {rest}"
    return parsed


def env_instructions(stage: Stage) -> dict[str, str]:
    """ENV KEY=VALUE ... (values with ${ARG} left as written)."""
    env: dict[str, str] = {}
    for rest in stage.all("ENV"):
        for word in shlex.split(rest):
            key, _, value = word.partition("=")
            env[key] = value
    return env
