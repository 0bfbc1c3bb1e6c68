"""The zygote forks each Python service from one preloaded interpreter: a forked child must
be what ``python -m module`` would have been (argv, environment, working directory, its own
session, stdin from /dev/null, output to its log, its title in ``ps``, its exit code), and
nothing may outlive the zygote. Real processes throughout."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from mercato.runtime.zygote import Zygote, ZygoteGone, enabled, module_of

PROBE = textwrap.dedent('''
    import json, os, sys
    import setproctitle
    print(json.dumps({
        "argv": sys.argv[1:], "cwd": os.getcwd(), "who": os.environ.get("PROBE_WHO"),
        "leaked": os.environ.get("ZYGOTE_ONLY"), "sid_is_pid": os.getsid(0) == os.getpid(),
        "pgid_is_pid": os.getpgid(0) == os.getpid(), "stdin": os.readlink("/proc/self/fd/0"),
        "title": setproctitle.getproctitle(), "name": __name__,
        "path0": sys.path[0]}), flush=True)
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "sleep":
        import time
        time.sleep(60)
    if mode == "raise":
        raise RuntimeError("the probe fails on purpose")
    if mode == "message":
        sys.exit("a message instead of a code")
    sys.exit(int(mode) if mode.isdigit() else 0)
''')


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    (tmp_path / "zprobe.py").write_text(PROBE)
    return tmp_path


async def _with_zygote(tmp_path: Path, body) -> None:  # type: ignore[no-untyped-def]
    log = open(tmp_path / "zygote.log", "ab")
    z = Zygote()
    try:
        await z.start({**os.environ, "ZYGOTE_ONLY": "1"}, str(tmp_path), log.fileno())
        await body(z)
    finally:
        await z.close()
        log.close()


def _spawn(z: Zygote, probe_dir: Path, log_path: Path, *args: str):  # type: ignore[no-untyped-def]
    fh = open(log_path, "ab")
    env = {"PATH": os.environ.get("PATH", ""), "PROBE_WHO": "the probe"}
    return fh, z.spawn([sys.executable, "-m", "zprobe", *args], env, str(probe_dir),
                       fh.fileno())


def _first_line(path: Path) -> dict:
    return json.loads(path.read_text().splitlines()[0])


def test_a_forked_child_is_what_python_dash_m_would_have_been(probe_dir: Path) -> None:
    async def body(z: Zygote) -> None:
        log = probe_dir / "probe.log"
        fh, spawning = _spawn(z, probe_dir, log, "7", "extra")
        child = await spawning
        fh.close()
        assert await asyncio.wait_for(child.wait(), 30) == 7
        assert child.returncode == 7
        seen = _first_line(log)
        assert seen["argv"] == ["7", "extra"] and seen["name"] == "__main__"
        assert seen["cwd"] == str(probe_dir) and seen["path0"] == str(probe_dir)
        assert seen["who"] == "the probe"
        assert seen["leaked"] is None  # the zygote's own environment is not the child's
        assert seen["sid_is_pid"] and seen["pgid_is_pid"]  # killpg(pid) stops all of it
        assert seen["stdin"] == "/dev/null"
        assert seen["title"] == f"{sys.executable} -m zprobe 7 extra"

    asyncio.run(_with_zygote(probe_dir, body))


def test_exit_codes_signals_and_failures_are_reported_as_a_process_would(
        probe_dir: Path) -> None:
    async def body(z: Zygote) -> None:
        codes = {}
        for mode in ("0", "raise", "message"):
            log = probe_dir / f"{mode}.log"
            fh, spawning = _spawn(z, probe_dir, log, mode)
            child = await spawning
            fh.close()
            codes[mode] = await asyncio.wait_for(child.wait(), 30)
            if mode == "raise":
                assert "RuntimeError: the probe fails on purpose" in log.read_text()
            if mode == "message":
                assert "a message instead of a code" in log.read_text()
        assert codes == {"0": 0, "raise": 1, "message": 1}
        fh, spawning = _spawn(z, probe_dir, probe_dir / "sleep.log", "sleep")
        child = await spawning
        fh.close()
        assert child.returncode is None
        os.kill(child.pid, signal.SIGKILL)
        assert await asyncio.wait_for(child.wait(), 30) == -signal.SIGKILL

    asyncio.run(_with_zygote(probe_dir, body))


def test_nothing_outlives_the_zygote_and_a_dead_zygote_refuses_to_spawn(
        probe_dir: Path) -> None:
    async def body(z: Zygote) -> None:
        fh, spawning = _spawn(z, probe_dir, probe_dir / "orphan.log", "sleep")
        child = await spawning
        fh.close()
        assert z.pid is not None and psutil.Process(child.pid).ppid() == z.pid
        os.kill(z.pid, signal.SIGKILL)
        # The supervisor learns the child is gone (the zygote was its parent) ...
        assert await asyncio.wait_for(child.wait(), 30) == -signal.SIGKILL
        # ... and the kernel really killed it (parent-death signal), not just said so.
        deadline = time.monotonic() + 10
        while psutil.pid_exists(child.pid) and \
                psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the child outlived its zygote"
            await asyncio.sleep(0.1)
        assert not z.alive
        with pytest.raises(ZygoteGone):
            await z.spawn([sys.executable, "-m", "zprobe"], {}, str(probe_dir), 1)

    asyncio.run(_with_zygote(probe_dir, body))


def test_only_python_dash_m_of_this_interpreter_goes_through_it_and_it_can_be_off() -> None:
    assert module_of([sys.executable, "-m", "orders"]) == "orders"
    assert module_of(["/usr/bin/python3.9", "-m", "orders"]) is None
    assert module_of([sys.executable, "script.py"]) is None
    assert module_of(["envoy", "-c", "x"]) is None
    assert enabled({}) and enabled({"MERCATO_ZYGOTE": "1"})
    assert not enabled({"MERCATO_ZYGOTE": "0"}) and not enabled({"MERCATO_ZYGOTE": "off"})


def test_a_child_asking_for_other_interpreter_settings_is_not_forked(tmp_path: Path) -> None:
    async def body(z: Zygote) -> None:
        same = {**os.environ, "ZYGOTE_ONLY": "1", "PYTHONUNBUFFERED": "1", "OTHER": "x"}
        assert z.can_run(same)
        # A release puts its new source first on PYTHONPATH: read at interpreter start
        # only, so a fork would run the old code.
        assert not z.can_run({**same, "PYTHONPATH": str(tmp_path)})
        assert not z.can_run({**same, "PYTHONHASHSEED": "7"})

    asyncio.run(_with_zygote(tmp_path, body))
