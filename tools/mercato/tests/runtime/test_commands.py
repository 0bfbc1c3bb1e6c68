"""The supervisor's command channel (the console's restart button): restart, stop and start
a process of a running platform; what everything depends on is refused."""

from __future__ import annotations

import asyncio

import pytest
from mercato.runtime import commands, control
from mercato.runtime.paths import Home

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def proc(home: Home, name: str) -> dict:
    return ((control.read_state(home) or {}).get("processes") or {}).get(name) or {}


def send(home: Home, command: str, process: str) -> dict:
    return asyncio.run(commands.send(home.supervisor_socket, command, process))


def test_restart_stop_and_start_through_the_channel(home: Home, mercato, waiter):
    res = mercato("up", "--detach")
    assert res.returncode == 0, res.stdout + res.stderr
    try:
        assert home.supervisor_socket.stat().st_mode & 0o777 == 0o600
        old_pid = proc(home, "fake-1")["pid"]
        assert send(home, "restart", "fake-1") == {"ok": True, "state": "restarting"}
        waiter(lambda: proc(home, "fake-1").get("state") == "ready"
               and proc(home, "fake-1").get("pid") != old_pid, 30, "fake-1 restarted")
        last = proc(home, "fake-1")["last_restart"]
        assert last["cause"] == "requested" and last["backoff_s"] < 0.5

        assert send(home, "stop", "fake-1")["ok"]
        assert proc(home, "fake-1")["state"] == "stopped"
        assert send(home, "stop", "postgres") == {
            "ok": False, "error": "postgres is an engine: restart the platform"}
        assert not send(home, "restart", "nobody")["ok"]
        assert send(home, "start", "fake-1") == {"ok": True, "state": "starting"}
        waiter(lambda: proc(home, "fake-1").get("state") == "ready", 30, "fake-1 back")
        assert not send(home, "start", "fake-1")["ok"]  # it runs already
    finally:
        assert mercato("down").returncode == 0
    assert not home.supervisor_socket.exists()
