"""`mercato chaos` and `mercato soak` refuse bad input with a clear error, before any load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mercato.cli", *args, "--home",
                           str(tmp_path / "home")], capture_output=True, text=True,
                          timeout=60, check=False, env={"PATH": "/usr/bin:/bin",
                                                        "COLUMNS": "200"})


@pytest.mark.parametrize("args, code, message", [
    (("chaos", "--scenario", "nope"), 2, "unknown scenario(s): nope"),
    (("chaos", "--all", "--scenario", "kill-nats"), 2, "--all and --scenario exclude"),
    (("chaos",), 1, "mercato is not running"),
    (("chaos", "--rate", "0"), 2, "Invalid value for '--rate'"),
    (("soak", "--minutes", "0.5", "--window-seconds", "60"), 2,
     "shorter than one window"),
    (("soak",), 1, "mercato is not running"),
])
def test_bad_input_is_a_clear_error(tmp_path: Path, args: tuple[str, ...], code: int,
                                    message: str) -> None:
    res = cli(tmp_path, *args)
    assert res.returncode == code, res.stdout + res.stderr
    assert message in res.stdout + res.stderr
    assert "Traceback" not in res.stderr


def test_the_list_names_every_scenario_and_marks_the_short_set(tmp_path: Path) -> None:
    res = cli(tmp_path, "chaos", "--list")
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    from mercato.chaos.scenarios import all_scenarios
    from mercato.runtime.services import SERVICES

    assert len(lines) == len(all_scenarios())
    assert all(any(line.startswith(f"kill-{s} ") for line in lines) for s in SERVICES)
    assert sum("(short set)" in line for line in lines) == 4
