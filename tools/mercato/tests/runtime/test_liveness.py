"""The supervisor notices a process that hangs, not only one that exits, and brings the
infrastructure everything depends on back at once (fake services, real engines)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import httpx2 as httpx
import psutil
import pytest
from mercato.runtime import control
from mercato.runtime.paths import Home
from mercato.runtime.supervisor import (
    LIVENESS_INTERVAL_MAX_S,
    QUICK_RESTART_DELAY_S,
    liveness_interval,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def proc(home: Home, name: str) -> dict:
    return ((control.read_state(home) or {}).get("processes") or {}).get(name) or {}


def restarted(home: Home, name: str, restarts: int, old_pid: int) -> bool:
    now = proc(home, name)
    return (now.get("restarts", 0) >= restarts and now.get("state") == "ready"
            and now.get("pid") not in (None, old_pid))


def gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def helper_pid(home: Home, name: str, pid: int) -> int:
    """The helper process the fake service of ``pid`` started (from its "listening" line)."""
    for line in home.log_file(name).read_text().splitlines():
        if line.startswith("{"):
            doc = json.loads(line)
            if doc.get("event") == "listening" and doc.get("pid") == pid:
                return int(doc["helper_pid"])
    raise AssertionError(f"no listening line of pid {pid} in {name}.log")


def block_event_loop(port: int) -> None:
    """POST /debug/block and walk away: the handler never answers, its loop never runs again."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"POST /debug/block HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")


def test_stopped_and_blocked_services_are_killed_and_restarted(home: Home, mercato, waiter):
    res = mercato("up", "--detach", "--scale", "fake=2", "--liveness-timeout", "2",
                  env={"FAKE_HELPER": "1"})
    assert res.returncode == 0, res.stdout + res.stderr
    stopped, blocked = proc(home, "fake-1"), proc(home, "fake-2")
    helper = helper_pid(home, "fake-1", stopped["pid"])
    assert not gone(helper)

    os.kill(stopped["pid"], signal.SIGSTOP)  # alive to the kernel, answering nothing
    block_event_loop(blocked["port"])

    waiter(lambda: restarted(home, "fake-1", 1, stopped["pid"]), 60, "fake-1 restarted")
    waiter(lambda: restarted(home, "fake-2", 1, blocked["pid"]), 60, "fake-2 restarted")
    for name, before in (("fake-1", stopped), ("fake-2", blocked)):
        last = proc(home, name)["last_restart"]
        assert last["cause"] == "liveness_timeout", last
        assert "no liveness answer for" in last["detail"] and "limit 2 s" in last["detail"]
        assert last["exit_code"] == -signal.SIGKILL
        waiter(lambda pid=before["pid"]: gone(pid), 10, f"old {name} gone")
    # The whole group was killed: the helper the stopped service had started is gone too.
    waiter(lambda: gone(helper), 10, "the stopped service's helper gone with it")

    table = mercato("status")
    assert table.returncode == 0, table.stderr
    assert table.stdout.count("liveness timeout") == 2, table.stdout
    doc = json.loads(mercato("status", "--json").stdout)
    causes = {r["process"]: (r["last_restart"] or {}).get("cause") for r in doc["processes"]}
    assert causes == {"postgres": None, "nats": None, "fake-1": "liveness_timeout",
                      "fake-2": "liveness_timeout"}
    assert mercato("down").returncode == 0


def test_liveness_is_probed_every_third_of_the_timeout_at_most_every_5_s(home: Home, mercato):
    # Idle work (issue 17): a probe every second was an HTTP request a second for every
    # process. The default timeout (15 s) is three missed probes, 5 s apart.
    assert liveness_interval(15) == LIVENESS_INTERVAL_MAX_S == 5
    assert liveness_interval(2) == pytest.approx(2 / 3)
    assert liveness_interval(600) == 5
    res = mercato("up", "--detach")
    assert res.returncode == 0, res.stdout + res.stderr
    try:
        url = f"http://127.0.0.1:{proc(home, 'fake-1')['port']}/debug/probes"
        first = httpx.get(url, timeout=5).json()["live"]
        time.sleep(11)
        probed = httpx.get(url, timeout=5).json()["live"] - first
        assert 1 <= probed <= 3, f"{probed} liveness probes in 11 s"
    finally:
        assert mercato("down").returncode == 0


def test_a_slow_start_is_not_taken_for_a_hang(home: Home, mercato):
    # Not listening for 3 s, with a liveness timeout of 1 s: liveness is only asked of a
    # process that was ready (the first start is bounded by `up --timeout`).
    res = mercato("up", "--detach", "--liveness-timeout", "1",
                  env={"FAKE_LISTEN_AFTER_S": "3"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert proc(home, "fake-1")["restarts"] == 0
    assert proc(home, "fake-1")["last_restart"] is None
    assert mercato("down").returncode == 0


def test_a_bad_liveness_timeout_is_a_user_error(home: Home, mercato):
    res = mercato("up", "--detach", env={"MERCATO_LIVENESS_TIMEOUT_S": "soon"})
    assert res.returncode == 2
    assert "MERCATO_LIVENESS_TIMEOUT_S='soon' is not a number of seconds" in res.stderr
    assert "Traceback" not in res.stderr
    assert control.running_pid(home) is None


def test_infrastructure_comes_back_at_once_and_a_hung_engine_is_killed(home: Home, mercato,
                                                                       waiter):
    pytest.importorskip("mercato.gateway")
    res = mercato("up", "--detach", "--service", "fake=fakesvc", "--liveness-timeout", "2",
                  fake=False)
    assert res.returncode == 0, res.stdout + res.stderr

    # Three crashes in a row each: a service backs off longer every time, the engines and
    # Envoy come back after the same short pause (a growing backoff only stretches an
    # outage that every service shares).
    for name in ("nats", "postgres", "envoy", "fake-1"):
        for n in range(1, 4):
            before = proc(home, name)
            # PostgreSQL's backends are its children: a crash takes them all.
            os.killpg(before["pid"], signal.SIGKILL)
            waiter(lambda name=name, n=n, pid=before["pid"]: restarted(home, name, n, pid),
                   60, f"{name} restarted ({n})")
            last = proc(home, name)["last_restart"]
            assert last["cause"] == "exited" and last["detail"] == "killed by SIGKILL", last
            if name == "fake-1":
                assert last["backoff_s"] == 0.5 * 2 ** (n - 1), (n, last)
            else:
                assert last["backoff_s"] == QUICK_RESTART_DELAY_S, (name, n, last)

    # A stopped NATS still accepts connections in the kernel but says nothing: it is hung.
    before = proc(home, "nats")
    os.kill(before["pid"], signal.SIGSTOP)
    waiter(lambda: restarted(home, "nats", 4, before["pid"]), 60, "the stopped NATS replaced")
    assert proc(home, "nats")["last_restart"]["cause"] == "liveness_timeout"
    assert mercato("down").returncode == 0
