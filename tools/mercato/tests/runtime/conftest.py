"""Helpers for the runtime tests: throw-away homes and the `mercato` CLI as a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mercato.runtime import control
from mercato.runtime.paths import Home, free_port

FAKE_SERVICES = Path(__file__).resolve().parent.parent / "fake_services"


@pytest.fixture
def home() -> Iterator[Home]:
    """A fresh home on its own free ports, stopped and removed after the test."""
    # Not tmp_path: pytest's base directory is 0700, which the mercato_pg user cannot traverse.
    root = Path(tempfile.mkdtemp(prefix="mercato-home-"))
    root.chmod(0o755)
    ports = {"postgres": free_port(), "nats": free_port(), "edge": free_port(),
             "envoy_admin": free_port()}
    (root / "config.json").write_text(json.dumps({"ports": ports}))
    h = Home(root)
    try:
        yield h
    finally:
        control.stop_platform(h, timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(FAKE_SERVICES), "FAKE_CHECK_DB": "1",
           "COLUMNS": "200"}
    env.pop("MERCATO_HOME", None)
    env.update(extra)
    return env


@pytest.fixture
def mercato(home: Home) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``mercato <args> --home <home>``; fake services, no gateway and no console
    unless told."""

    def run(*args: str, fake: bool = True, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "mercato.cli", *args, "--home", str(home.root)]
        if fake and args and args[0] == "up":
            argv += ["--service", "fake=fakesvc", "--no-gateway", "--no-telemetry"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=cli_env(**(env or {})))

    return run


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def waiter() -> Callable[..., Any]:
    return wait_for
