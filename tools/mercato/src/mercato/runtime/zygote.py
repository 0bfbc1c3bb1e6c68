"""One interpreter image for every Python service of the local platform (ADR 0033).

Each service is a ``python -m <module>`` process, and ~90 % of its memory is the same
imported code (FastAPI, pydantic, SQLAlchemy, asyncpg, nats-py, OpenTelemetry, the chassis):
measured, ``import chassis.app`` alone is 93 MB of RSS. Started apart, ten services hold ten
copies. The zygote imports that code once, freezes it out of the garbage collector's reach
(``gc.freeze``: a collection would otherwise write to every object and unshare its page)
and forks each service from itself, so the pages stay shared copy-on-write between all of
them (the model of Android's zygote and of preloading pre-fork servers).

The supervisor asks it over a ``SOCK_SEQPACKET`` socket pair: one message per spawn (the
argv, environment and working directory, with the log file's descriptor attached), one
answer with the child's pid; later one message per child that ended, with its exit code
(the zygote is the children's parent, so only it can reap them). ``Forked`` gives the
supervisor the part of ``asyncio.subprocess.Process`` it uses (``pid``, ``returncode``,
``wait()``). A child is what ``python -m module`` would have been: its own session and
process group, stdin from /dev/null, stdout and stderr to its log, its own environment and
working directory, its own title (``python -m module``) in ``ps``, killed by the kernel when
the zygote dies, which dies when the supervisor does.

Only ``python -m`` argvs of this interpreter go through it; everything else (PostgreSQL,
NATS, Envoy, a service built for another interpreter) is spawned as before.
``MERCATO_ZYGOTE=0`` turns it off (every child spawned apart, as before).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import importlib
import io
import json
import os
import runpy
import select
import signal
import socket
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

ENV = "MERCATO_ZYGOTE"
# Imported once in the zygote: what every service imports anyway. A module here must not
# start a thread or open a connection at import (a fork copies only the forking thread).
PRELOAD = ("chassis.app", "fastapi", "pydantic", "sqlalchemy.ext.asyncio", "asyncpg", "nats",
           "uvicorn", "structlog", "prometheus_client", "opentelemetry.sdk.trace",
           "aiohttp", "jwt", "cryptography.hazmat.primitives.asymmetric.ed25519")
MAX_MESSAGE = 1 << 20
# The zygote's last argument: what `ps` shows for it, and the room in its argv that each
# child's title ("<python> -m <module>") is written into (the title cannot grow past it).
TITLE_ROOM = "mercato-zygote: the python services' shared interpreter image, forked per service"
PR_SET_PDEATHSIG = 1


# Read by the interpreter at its start only (a fork inherits the zygote's): a child that asks
# for other values of these (a release's PYTHONPATH with new code first, say) is spawned
# apart. PYTHONUNBUFFERED is applied to the child's streams after the fork.
_AT_START_ONLY_EXCEPT = frozenset({"PYTHONUNBUFFERED"})


def interpreter_settings(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items()
            if k.startswith("PYTHON") and k not in _AT_START_ONLY_EXCEPT}


def enabled(env: Mapping[str, str] = os.environ) -> bool:
    return env.get(ENV, "1") not in ("0", "false", "no", "off")


def module_of(argv: Sequence[str], python: str = sys.executable) -> str | None:
    """The module a ``[python, "-m", module, ...]`` argv of this interpreter runs, or None
    when the argv is anything else (it is then spawned apart)."""
    if len(argv) >= 3 and argv[0] == python and argv[1] == "-m" and argv[2]:
        return argv[2]
    return None


# -- the zygote process ------------------------------------------------------------------------


def _die_with_parent() -> None:
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _child(request: dict[str, Any], log_fd: int, control: socket.socket,
           wake_r: int, wake_w: int) -> None:
    """In the forked child: become ``python -m module`` and run it. Never returns."""
    code = 1
    try:
        control.close()
        os.close(wake_r)
        os.close(wake_w)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()
        _die_with_parent()  # the zygote is the parent now: it goes, the child goes
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(devnull)
        os.close(log_fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        argv: list[str] = request["argv"]
        unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(line_buffering=True, write_through=unbuffered)
        import setproctitle

        setproctitle.setproctitle(" ".join(argv))  # what `ps` shows (see TITLE_ROOM)
        sys.argv = [argv[0], *argv[3:]]
        sys.path[0] = request["cwd"]  # what `python -m` puts first
        # The preloaded objects stay frozen: a collection that scanned them would write to
        # each one's header and copy every page of them into this child. The service's own
        # objects are collected as usual.
        gc.enable()
        try:
            runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if exc.code is not None and not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            code = 1
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _send(control: socket.socket, doc: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        control.send(json.dumps(doc).encode())


def serve(control: socket.socket) -> None:
    """The zygote's loop: spawn on request, report every child's end, stop at EOF."""
    _die_with_parent()
    for module in PRELOAD:
        try:
            importlib.import_module(module)
        except ImportError as exc:  # a child imports it itself: slower, not wrong
            print(f"zygote: not preloading {module}: {exc}", file=sys.stderr, flush=True)
    gc.collect()
    gc.freeze()  # every object so far is in the permanent generation: never scanned
    gc.disable()  # nothing else runs here but this loop; the children re-enable it
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # it stops when the supervisor closes
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    children: set[int] = set()
    _send(control, {"ready": os.getpid()})
    while True:
        try:
            readable, _, _ = select.select([control.fileno(), wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
            _reap(control, children)
        if control.fileno() in readable:
            try:
                data, fds, _flags, _addr = socket.recv_fds(control, MAX_MESSAGE, 1)
            except OSError:
                data, fds = b"", []
            if not data:
                break  # the supervisor is gone or done: the children follow by deathsig
            request = json.loads(data)
            sys.stdout.flush()
            sys.stderr.flush()
            try:
                pid = os.fork()
            except OSError as exc:
                _send(control, {"id": request["id"], "error": str(exc)})
                for fd in fds:
                    os.close(fd)
                continue
            if pid == 0:
                _child(request, fds[0], control, wake_r, wake_w)
            for fd in fds:
                os.close(fd)
            children.add(pid)
            _send(control, {"id": request["id"], "pid": pid})
            _reap(control, children)  # a child may have ended already
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _reap(control: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        _send(control, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def main() -> None:
    fd = int(os.environ.pop("MERCATO_ZYGOTE_FD"))
    # A child's title is written over the zygote's own argv, never over its environment:
    # /proc/<pid>/environ keeps the runtime home mark `mercato down` finds leftovers by.
    os.environ["SPT_NOENV"] = "1"
    import setproctitle

    # Its first call finds the argv area (and reads SPT_NOENV): done here, once, while the
    # environment is the one the zygote was started with.
    setproctitle.setproctitle(setproctitle.getproctitle())

    serve(socket.socket(fileno=fd))


# -- the supervisor's side ---------------------------------------------------------------------


class ZygoteGone(OSError):
    """The zygote is not there (it died, or was never started): spawn apart."""


class Forked:
    """A child of the zygote, as the supervisor sees an ``asyncio.subprocess.Process``."""

    def __init__(self, pid: int, ended: asyncio.Future[int]) -> None:
        self.pid = pid
        self._ended = ended

    @property
    def returncode(self) -> int | None:
        return self._ended.result() if self._ended.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._ended)

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)


class Zygote:
    """The supervisor's handle on its zygote process."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self.pid: int | None = None
        self._sock: socket.socket | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._next_id = 0
        self._spawning: dict[int, asyncio.Future[int]] = {}
        self._ends: dict[int, asyncio.Future[int]] = {}
        self._early: dict[int, int] = {}  # ended before their spawn answer was read
        self._ready: asyncio.Future[int] | None = None
        self._settings: dict[str, str] = {}

    def can_run(self, env: Mapping[str, str]) -> bool:
        """Whether a child with this environment may be forked from this zygote: the same
        interpreter settings it was started with."""
        return interpreter_settings(env) == self._settings

    async def start(self, env: Mapping[str, str], cwd: str, log: int,
                    timeout_s: float = 60.0) -> None:
        self._settings = interpreter_settings(env)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                self.python, "-c", "from mercato.runtime.zygote import main; main()", TITLE_ROOM,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                env={**env, "MERCATO_ZYGOTE_FD": str(theirs.fileno())}, cwd=cwd,
                pass_fds=(theirs.fileno(),), start_new_session=True)
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        loop.add_reader(ours.fileno(), self._on_message)
        try:
            self.pid = await asyncio.wait_for(asyncio.shield(self._ready), timeout_s)
        except (TimeoutError, ZygoteGone):
            await self.close()
            raise ZygoteGone("the zygote did not start (see the supervisor's log)") from None

    @property
    def alive(self) -> bool:
        return self._sock is not None

    def _on_message(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._gone()
                return
            doc = json.loads(data)
            if "ready" in doc and self._ready is not None and not self._ready.done():
                self._ready.set_result(int(doc["ready"]))
            elif "exited" in doc:
                pid, code = int(doc["exited"]), int(doc["code"])
                ended = self._ends.pop(pid, None)
                if ended is None:
                    self._early[pid] = code
                elif not ended.done():
                    ended.set_result(code)
            elif "id" in doc:
                waiting = self._spawning.pop(int(doc["id"]), None)
                if waiting is not None and not waiting.done():
                    if "pid" in doc:
                        waiting.set_result(int(doc["pid"]))
                    else:
                        waiting.set_exception(OSError(doc.get("error", "fork failed")))

    def _gone(self) -> None:
        """The zygote ended: its children died with it (deathsig)."""
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        for waiting in self._spawning.values():
            if not waiting.done():
                waiting.set_exception(ZygoteGone("the zygote ended"))
        for ended in self._ends.values():
            if not ended.done():
                ended.set_result(-signal.SIGKILL)
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ZygoteGone("the zygote ended before it was ready"))
        self._spawning.clear()
        self._ends.clear()

    async def spawn(self, argv: Sequence[str], env: Mapping[str, str], cwd: str,
                    log: int) -> Forked:
        if self._sock is None:
            raise ZygoteGone("the zygote is not running")
        loop = asyncio.get_running_loop()
        self._next_id += 1
        waiting: asyncio.Future[int] = loop.create_future()
        self._spawning[self._next_id] = waiting
        message = json.dumps({"id": self._next_id, "argv": list(argv), "env": dict(env),
                              "cwd": cwd}).encode()
        try:
            socket.send_fds(self._sock, [message], [log])
        except OSError as exc:
            self._spawning.pop(self._next_id, None)
            raise ZygoteGone(f"the zygote does not answer: {exc}") from None
        pid = await waiting
        ended: asyncio.Future[int] = loop.create_future()
        if pid in self._early:
            ended.set_result(self._early.pop(pid))
        else:
            self._ends[pid] = ended
        return Forked(pid, ended)

    async def close(self) -> None:
        self._gone()
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()


