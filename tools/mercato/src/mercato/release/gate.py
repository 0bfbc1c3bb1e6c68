"""The gate before a release: the contracts the new version would publish and consume must
be compatible with the published ones (``python -m contracts check``), since the old and the
new instances read from the same durable consumers and their events go to the same streams
while the release runs.

Run with the new version's PYTHONPATH, so a ``--source`` tree that carries its own
``contracts`` package is checked as it would run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mercato.runtime.services import repo_root

GATE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class GateResult:
    ok: bool
    output: str


def contracts_gate(source: Path | None) -> GateResult:
    env = dict(os.environ)
    if source is not None:
        before = env.get("PYTHONPATH", "")
        env["PYTHONPATH"] = str(source) + (os.pathsep + before if before else "")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "contracts", "check"], capture_output=True, text=True,
            env=env, cwd=str(repo_root()), timeout=GATE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return GateResult(False, f"the contracts check took more than {GATE_TIMEOUT_S:g} s")
    return GateResult(proc.returncode == 0, (proc.stdout + proc.stderr).strip())
