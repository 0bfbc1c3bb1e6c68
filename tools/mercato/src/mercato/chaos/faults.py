"""The faults ``mercato chaos`` injects into a running platform, one function each.

Every process is found by name in the home's ``run/state.json`` and checked to belong to
that home (``MERCATO_RUNTIME_HOME`` in its environment, or the supervisor's pid file) before
a signal is sent: a reused pid is never signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

from mercato.runtime import control
from mercato.runtime.cleanup import ENV_MARK
from mercato.runtime.faultproxy import Fault, faults_path, read_faults, write_faults
from mercato.runtime.paths import Home


class FaultError(Exception):
    """The fault could not be injected (the process is not there, the platform is down)."""


def state_of(home: Home) -> dict[str, Any]:
    state = control.read_state(home)
    if state is None:
        raise FaultError(f"no {home.state_file}: is the platform running?")
    return state


def process_pid(home: Home, name: str) -> int:
    """The pid of process ``name`` (``orders-1``, ``postgres``, ``supervisor``) of this home."""
    import psutil

    state = state_of(home)
    if name == "supervisor":
        pid = state.get("supervisor_pid")
    else:
        pid = ((state.get("processes") or {}).get(name) or {}).get("pid")
    if not pid:
        raise FaultError(f"{name} has no running process (see mercato status)")
    try:
        proc = psutil.Process(int(pid))
        mark = proc.environ().get(ENV_MARK)
    except psutil.Error as exc:
        raise FaultError(f"{name} (pid {pid}) cannot be inspected: {exc}") from exc
    if name != "supervisor" and mark != str(home.root):
        raise FaultError(f"pid {pid} is not {name} of {home.root}")
    if name == "supervisor" and control.running_pid(home) != int(pid):
        raise FaultError(f"pid {pid} is not the supervisor of {home.root}")
    return int(pid)


def signal_process(home: Home, name: str, sig: int) -> int:
    pid = process_pid(home, name)
    try:
        os.kill(pid, sig)
    except ProcessLookupError as exc:
        raise FaultError(f"{name} (pid {pid}) exited before the signal") from exc
    return pid


async def wait_replaced(home: Home, name: str, old_pid: int, timeout_s: float) -> bool:
    """Until ``name`` runs again under another pid and is ready."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        proc = ((control.read_state(home) or {}).get("processes") or {}).get(name) or {}
        if proc.get("pid") not in (None, old_pid) and proc.get("state") == "ready":
            return True
        await asyncio.sleep(0.1)
    return False


async def kill_9(home: Home, name: str) -> dict[str, Any]:
    pid = signal_process(home, name, signal.SIGKILL)
    return {"killed": name, "pid": pid}


async def kill_repeatedly(home: Home, name: str, seconds: float) -> dict[str, Any]:
    """kill -9 ``name`` each time it is back and ready, for ``seconds``: an outage made of
    many short ones, as a crash-looping broker is."""
    deadline = time.monotonic() + seconds
    kills = 0
    while time.monotonic() < deadline:
        pid = signal_process(home, name, signal.SIGKILL)
        kills += 1
        if not await wait_replaced(home, name, pid, max(0.5, deadline - time.monotonic())):
            break
    return {"killed": name, "kills": kills, "for_s": seconds}


async def stop_for(home: Home, name: str, seconds: float) -> dict[str, Any]:
    """SIGSTOP ``name`` for ``seconds``, then SIGCONT (unless the supervisor, seeing it hung,
    has killed and replaced it meanwhile)."""
    pid = signal_process(home, name, signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    now = ((control.read_state(home) or {}).get("processes") or {}).get(name) or {}
    return {"stopped": name, "pid": pid, "for_s": seconds,
            "replaced_by_supervisor": now.get("pid") != pid}


def up_argv(home: Home, state: dict[str, Any]) -> list[str]:
    """``mercato up --detach`` as the platform was started (its scale and fault proxy)."""
    options = state.get("options") or {}
    argv = [sys.executable, "-m", "mercato.cli", "up", "--detach", "--home", str(home.root)]
    for item in options.get("scale") or []:
        argv += ["--scale", str(item)]
    if options.get("fault_proxy"):
        argv.append("--fault-proxy")
    for item in options.get("with") or []:
        argv += ["--with", str(item)]
    return argv


def _run_cli(argv: list[str], timeout_s: float) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,  # noqa: S603
                         check=False, env={k: v for k, v in os.environ.items()
                                           if k != "MERCATO_HOME"})
    if res.returncode != 0:
        raise FaultError(f"{' '.join(argv[3:5])} failed ({res.returncode}): "
                         f"{(res.stderr or res.stdout).strip()[-400:]}")


async def kill_supervisor_and_up(home: Home) -> dict[str, Any]:
    """kill -9 of the supervisor: its children die with it (parent-death signal); the
    operator's answer is ``mercato up`` again, which this does once nothing is left."""
    state = state_of(home)
    argv = up_argv(home, state)
    pid = signal_process(home, "supervisor", signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if control.running_pid(home) is None and not control.find_leftovers(home):
            break
        await asyncio.sleep(0.2)
    t0 = time.monotonic()
    await asyncio.to_thread(_run_cli, argv, 240)
    return {"killed": "supervisor", "pid": pid, "up_s": round(time.monotonic() - t0, 1)}


async def down_and_up(home: Home) -> dict[str, Any]:
    """``mercato down`` with orders in flight, then ``mercato up`` the same way."""
    argv = up_argv(home, state_of(home))
    t0 = time.monotonic()
    await asyncio.to_thread(_run_cli, [sys.executable, "-m", "mercato.cli", "down", "--home",
                                       str(home.root)], 120)
    down_s = time.monotonic() - t0
    await asyncio.to_thread(_run_cli, argv, 240)
    return {"down_s": round(down_s, 1), "up_s": round(time.monotonic() - t0 - down_s, 1)}


# -- the fault proxy --------------------------------------------------------------------------


def require_route(home: Home, route: str) -> None:
    routes = (state_of(home).get("fault_proxy") or {}).get("routes") or {}
    if route not in routes:
        raise FaultError(f"no fault proxy route {route!r}: start the platform with "
                         f"mercato up --fault-proxy")


def set_fault(home: Home, route: str, change: dict[str, Any]) -> Fault:
    path = faults_path(home)
    faults = read_faults(path)
    current = faults.get(route, Fault())
    new = Fault(**{**current.__dict__, **change})
    faults[route] = new
    write_faults(path, faults)
    return new


def clear_faults(home: Home) -> None:
    """Lift every fault; reset counters are kept so they never go backwards."""
    path = faults_path(home)
    with contextlib.suppress(ValueError):
        write_faults(path, {name: Fault(reset_seq=f.reset_seq)
                            for name, f in read_faults(path).items()})


async def latency(home: Home, route: str, ms: float, seconds: float) -> dict[str, Any]:
    require_route(home, route)
    set_fault(home, route, {"latency_ms": ms})
    try:
        await asyncio.sleep(seconds)
    finally:
        set_fault(home, route, {"latency_ms": 0.0})
    return {"route": route, "latency_ms": ms, "for_s": seconds}


async def resets(home: Home, route: str, every_s: float, seconds: float) -> dict[str, Any]:
    """Cut every connection of the route every ``every_s`` for ``seconds``."""
    require_route(home, route)
    deadline = time.monotonic() + seconds
    cuts = 0
    while time.monotonic() < deadline:
        seq = read_faults(faults_path(home)).get(route, Fault()).reset_seq
        set_fault(home, route, {"reset_seq": seq + 1})
        cuts += 1
        await asyncio.sleep(every_s)
    return {"route": route, "resets": cuts, "every_s": every_s, "for_s": seconds}


# -- messages no handler can take ------------------------------------------------------------

POISON_SUBJECT = "inventory.commands.reserve_stock"
POISON_CONSUMER = "inventory-commands"


async def poison_messages(home: Home, nats_url: str, wait_s: float = 60.0) -> dict[str, Any]:
    """Publish a message whose body is not JSON and one of an unknown version to inventory's
    command stream, wait until both are dead letters, then discard them (they would only
    litter the operator's list). The saga traffic around them must not notice."""
    import nats
    from chassis.messaging.dlq import discard_dead_letter, show_dead_letter
    from chassis.messaging.envelope import H_MESSAGE_ID, H_NATS_MSG_ID, H_TYPE
    from chassis.messaging.streams import DEAD_LETTER_STREAM

    from mercato.runtime.broker import connect_options

    sent = {}
    for kind, mtype, body in (("malformed", "ReserveStock.v1", b"{not json"),
                              ("unknown version", "ReserveStock.v99",
                               b'{"reservation_id": "chaos", "lines": []}')):
        mid = str(uuid.uuid4())
        sent[mid] = (kind, mtype, body)
    nc = await nats.connect(nats_url, connect_timeout=3, **connect_options(home))
    try:
        js = nc.jetstream()
        # Only letters from now on are read: an old platform may keep many.
        next_seq = (await js.stream_info(DEAD_LETTER_STREAM)).state.last_seq + 1
        for mid, (_kind, mtype, body) in sent.items():
            await js.publish(POISON_SUBJECT, body, headers={
                H_NATS_MSG_ID: mid, H_MESSAGE_ID: mid, H_TYPE: mtype})
        t0 = time.monotonic()
        found: dict[str, float] = {}
        while time.monotonic() - t0 < wait_s and len(found) < len(sent):
            last = (await js.stream_info(DEAD_LETTER_STREAM)).state.last_seq
            while next_seq <= last:
                letter = await show_dead_letter(js, next_seq)
                next_seq += 1
                if letter is not None and letter.consumer == POISON_CONSUMER \
                        and letter.message_id in sent:
                    found[letter.message_id] = round(time.monotonic() - t0, 1)
                    await discard_dead_letter(js, letter.sequence)
            await asyncio.sleep(0.5)
    finally:
        await nc.close()
    missing = [sent[m][0] for m in sent if m not in found]
    return {"published": [k for k, _t, _b in sent.values()],
            "dead_lettered_after_s": {sent[m][0]: s for m, s in found.items()},
            "not_dead_lettered": missing}
