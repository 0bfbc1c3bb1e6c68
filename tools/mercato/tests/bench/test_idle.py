"""``mercato bench idle``: per-group cores of real processes, the comparison of saved runs,
and clear refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mercato.bench import idle
from mercato.cli import app
from typer.testing import CliRunner

runner = CliRunner()


def test_a_busy_group_shows_its_cores_and_a_sleeping_one_almost_none() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    asleep = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cores = idle.measure({"busy": [busy.pid], "asleep": [asleep.pid]}, 1.0, step_s=0.5)
    finally:
        busy.kill()
        asleep.kill()
    assert cores["busy"] > 0.2 > cores["asleep"]
    assert abs(cores["platform"] - cores["busy"] - cores["asleep"]) < 1e-3
    assert "bench client" not in cores


def _save(path: Path, **cores: float) -> Path:
    path.write_text(json.dumps(idle.document({**cores, "platform": sum(cores.values())},
                                             30.0, None)))
    return path


def test_saved_runs_compare_by_their_medians(tmp_path: Path) -> None:
    before = [_save(tmp_path / f"b{i}.json", nats=v, supervisor=0.05)
              for i, v in enumerate((0.05, 0.04, 0.06))]
    after = [_save(tmp_path / f"a{i}.json", nats=v, supervisor=0.02)
             for i, v in enumerate((0.02, 0.01, 0.03))]
    rows = idle.compare([idle.load(p) for p in before], [idle.load(p) for p in after])
    assert rows[0]["group"] == "platform"
    nats = next(r for r in rows if r["group"] == "nats")
    assert (nats["before"], nats["after"]) == (0.05, 0.02)
    assert abs(nats["ratio"] - 0.4) < 1e-9
    shown = runner.invoke(app, ["bench", "idle", *[a for p in before for a in ("--before", str(p))],
                                *[a for p in after for a in ("--after", str(p))]])
    assert shown.exit_code == 0, shown.output
    assert "platform" in shown.output and "0.40" in shown.output


def test_refusals_say_what_to_do(tmp_path: Path) -> None:
    other = tmp_path / "orders.json"
    other.write_text('{"kind": "mercato-bench-orders-baseline"}')
    refused = runner.invoke(app, ["bench", "idle", "--before", str(other), "--after", str(other)])
    assert refused.exit_code == 2 and "not a bench idle run" in refused.output
    one_side = runner.invoke(app, ["bench", "idle", "--before", str(other)])
    assert one_side.exit_code == 2 and "--after" in one_side.output
    no_platform = runner.invoke(app, ["bench", "idle", "--home", str(tmp_path / "none")])
    assert no_platform.exit_code != 0 and "Traceback" not in no_platform.output
