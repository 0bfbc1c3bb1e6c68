"""The supervisor and the CLI around it, with a tiny fake service instead of the real ones."""

from __future__ import annotations

import os
import signal
import socket
import time

import asyncpg
import psutil
import pytest
from mercato.runtime import control
from mercato.runtime.paths import Home

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def state(home: Home) -> dict:
    return control.read_state(home) or {}


def own_env(home: Home, name: str) -> dict[str, str]:
    """The environment a fake instance runs with, as it sees it (``/debug/env``)."""
    import json
    import urllib.request

    url = f"http://127.0.0.1:{proc(home, name)['port']}/debug/env"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def proc(home: Home, name: str) -> dict:
    return (state(home).get("processes") or {}).get(name) or {}


def assert_nothing_left(home: Home, pids: list[int], waiter) -> None:
    waiter(lambda: not control.find_leftovers(home), 20, "no process of the home")
    for pid in pids:
        waiter(lambda pid=pid: not psutil.pid_exists(pid)
               or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 10, f"pid {pid} gone")


def test_up_scale_restart_down_and_data_survives(home: Home, mercato, waiter):
    res = mercato("up", "--detach", "--scale", "fake=2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ready in" in res.stdout
    st = state(home)
    assert st["phase"] == "ready"
    assert {n: p["state"] for n, p in st["processes"].items()} == {
        "postgres": "ready", "nats": "ready", "fake-1": "ready", "fake-2": "ready"}
    assert st["processes"]["fake-1"]["port"] != st["processes"]["fake-2"]["port"]
    # NATS runs on one P (ADR 0050); the services' environment is left alone.
    assert psutil.Process(st["processes"]["nats"]["pid"]).environ().get("GOMAXPROCS") == "1"
    assert "GOMAXPROCS" not in psutil.Process(st["processes"]["fake-1"]["pid"]).environ()

    # Second `up`: says so, succeeds, changes nothing.
    again = mercato("up", "--detach")
    assert again.returncode == 0
    assert "already running" in again.stdout
    assert state(home)["supervisor_pid"] == st["supervisor_pid"]

    # kill -9 one instance: restarted (new pid, new port), counted once.
    old_pid = st["processes"]["fake-1"]["pid"]
    os.kill(old_pid, signal.SIGKILL)
    waiter(lambda: proc(home, "fake-1").get("restarts") == 1
           and proc(home, "fake-1").get("state") == "ready", 30, "fake-1 restarted and ready")
    assert proc(home, "fake-1")["pid"] != old_pid
    assert proc(home, "fake-2")["restarts"] == 0

    status = mercato("status", "--json")
    assert status.returncode == 0
    import json

    doc = json.loads(status.stdout)
    assert doc["running"] is True
    assert {r["process"]: r["health"] for r in doc["processes"]} == {
        "postgres": "ok", "nats": "ok", "fake-1": "ok", "fake-2": "ok"}
    assert all(r["rss_bytes"] for r in doc["processes"])
    # The platform's total: PostgreSQL's backends and every other child counted, shared
    # pages once, so below what their RSS adds up to but above any one service process.
    memory = doc["memory"]
    assert memory["processes"] > len(doc["processes"])  # backends and workers included
    assert max(r["rss_bytes"] for r in doc["processes"] if r["kind"] != "engine") \
        < memory["pss_bytes"] < memory["rss_bytes"]
    assert "memory:" in mercato("status").stdout

    pids = [st["supervisor_pid"], *(p["pid"] for p in state(home)["processes"].values())]
    down = mercato("down")
    assert down.returncode == 0, down.stderr
    assert "stopped" in down.stdout
    assert_nothing_left(home, pids, waiter)
    assert not home.pid_file.exists()
    assert "not running" in mercato("status").stdout

    # Data survives down/up: each fake instance start inserted a row (2 + 1 restart + 1 now).
    assert mercato("up", "--detach").returncode == 0
    url = state(home)["processes"]["fake-1"] and home.read_secret("db-fake")
    dsn = f"postgresql://fake:{url['password']}@127.0.0.1:{home.ports().postgres}/fake"

    async def count() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM boots"))
        finally:
            await conn.close()

    import asyncio

    assert asyncio.run(count()) == 4
    assert mercato("down").returncode == 0


def test_killed_supervisor_leaves_no_orphans(home: Home, mercato, waiter):
    assert mercato("up", "--detach").returncode == 0
    st = state(home)
    pids = [p["pid"] for p in st["processes"].values()]
    os.kill(st["supervisor_pid"], signal.SIGKILL)
    # Parent-death signals take the children down without anyone calling `down`.
    assert_nothing_left(home, pids, waiter)
    # And the home is usable again straight away.
    res = mercato("up", "--detach")
    assert res.returncode == 0, res.stderr
    assert mercato("down").returncode == 0


def test_failing_service_fails_up_with_its_log(home: Home, mercato, waiter):
    t0 = time.monotonic()
    res = mercato("up", "--detach", env={"FAKE_CRASH": "1"})
    assert res.returncode == 1
    assert "fake-1 exited 3 times" in res.stderr
    assert "crashing on purpose" in res.stderr  # the tail of logs/fake-1.log
    assert "mercato logs fake" in res.stderr
    assert "Traceback" not in res.stderr
    assert time.monotonic() - t0 < 30
    waiter(lambda: not control.find_leftovers(home), 20, "platform stopped after failure")


def test_startup_timeout_reports_the_stuck_process(home: Home, mercato, waiter):
    # Long enough for the engines to come up on a loaded machine (they take ~3 s on an idle
    # one): the fake never gets ready, and the report must name it, not an engine starting.
    res = mercato("up", "--detach", "--timeout", "15", env={"FAKE_NEVER_READY": "1"})
    assert res.returncode == 1
    assert "not ready after 15 s" in res.stderr
    assert "fake-1.log" in res.stderr and "listening" in res.stderr
    waiter(lambda: not control.find_leftovers(home), 20, "platform stopped after timeout")
    assert control.running_pid(home) is None


def test_edge_port_taken_names_port_option(home: Home, mercato):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = mercato("up", "--detach", "--port", str(port), fake=False)
    assert res.returncode == 2
    assert f"port {port}" in res.stderr and "--port" in res.stderr
    assert "Traceback" not in res.stderr
    assert control.running_pid(home) is None


def test_bad_scale_is_a_user_error(home: Home, mercato):
    res = mercato("up", "--detach", "--scale", "nope=2")
    assert res.returncode == 2
    assert "unknown service 'nope'" in res.stderr
    assert "Traceback" not in res.stderr


def test_down_when_not_running(mercato):
    res = mercato("down")
    assert res.returncode == 0
    assert "not running" in res.stdout


def test_with_gateway_envoy_becomes_ready(home: Home, mercato, waiter):
    pytest.importorskip("mercato.gateway")
    res = mercato("up", "--detach", "--service", "fake=fakesvc", fake=False)
    assert res.returncode == 0, res.stdout + res.stderr
    st = state(home)
    assert st["processes"]["envoy"]["state"] == "ready"
    assert st["processes"]["envoy"]["kind"] == "gateway"
    assert st["control_plane"]["state"] == "ready"
    assert f"http://localhost:{home.ports().edge}" in res.stdout
    envoy_pid = st["processes"]["envoy"]["pid"]
    assert mercato("down").returncode == 0
    assert not psutil.pid_exists(envoy_pid) or \
        psutil.Process(envoy_pid).status() == psutil.STATUS_ZOMBIE


def test_fault_proxy_sits_between_a_service_and_its_engines(home: Home, mercato, waiter):
    from mercato.runtime.faultproxy import Fault, faults_path, write_faults

    res = mercato("up", "--detach", "--fault-proxy", "--scale", "fake=1")
    assert res.returncode == 0, res.stdout + res.stderr
    st = state(home)
    assert st["options"] == {"scale": ["fake=1"], "fault_proxy": True, "with": []}
    routes = st["fault_proxy"]["routes"]
    assert set(routes) == {"fake->postgres", "fake->nats"}
    assert routes["fake->postgres"]["upstream"].endswith(f":{home.ports().postgres}")
    env = own_env(home, "fake-1")
    assert f"@127.0.0.1:{routes['fake->postgres']['port']}/" in env["FAKE_DATABASE_URL"]
    assert env["FAKE_NATS_URL"] == f"nats://127.0.0.1:{routes['fake->nats']['port']}"
    # The fake checked its database before answering ready: through the proxy.
    assert routes["fake->postgres"]["accepted"] >= 1

    # A fault set in the file reaches the route and shows in the state.
    write_faults(faults_path(home), {"fake->postgres": Fault(latency_ms=25, reset_seq=1)})

    def applied() -> bool:
        # state.json is rewritten on any change; the kill below makes some.
        route = state(home)["fault_proxy"]["routes"]["fake->postgres"]
        return route["fault"]["latency_ms"] == 25 and route["resets"] == 1

    os.kill(proc(home, "fake-1")["pid"], signal.SIGKILL)
    waiter(lambda: proc(home, "fake-1").get("restarts") == 1
           and proc(home, "fake-1").get("state") == "ready", 30, "fake-1 restarted")
    waiter(applied, 10, "the fault applied to the route")


def test_without_the_flag_services_reach_the_engines_directly(home: Home, mercato):
    res = mercato("up", "--detach")
    assert res.returncode == 0, res.stdout + res.stderr
    st = state(home)
    assert "fault_proxy" not in st and st["options"]["fault_proxy"] is False
    env = own_env(home, "fake-1")
    assert f":{home.ports().postgres}/" in env["FAKE_DATABASE_URL"]
