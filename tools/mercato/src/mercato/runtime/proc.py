"""Child-process plumbing shared by the engines, the supervisor and the test fixtures.

Every child runs in its own session (so a signal to its group reaches its helpers, and a
Ctrl-C in the terminal does not hit it behind the supervisor's back) and carries a
parent-death signal, so killing the parent with SIGKILL still leaves no orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

PG_USER = "mercato_pg"
_PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Any:
    return ctypes.CDLL(None, use_errno=True).prctl


def deathsig_preexec(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the kernel send ``sig`` to the child when its parent dies.

    It runs after subprocess has switched uid/gid: changing credentials clears the setting,
    so it must come last.
    """
    parent = os.getpid()
    # Resolved here, in the parent: a dlopen between fork and exec could deadlock on a lock
    # held by another thread (the supervisor runs to_thread workers).
    prctl = _prctl()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        # The parent may have died between fork and prctl; then nobody would signal us.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


@dataclass(frozen=True)
class RunAs:
    """Credentials to run PostgreSQL with: itself when not root, ``mercato_pg`` when root."""

    uid: int | None = None
    gid: int | None = None

    @property
    def switch(self) -> bool:
        return self.uid is not None

    def popen_kwargs(self) -> dict[str, Any]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def chown(self, path: os.PathLike[str] | str) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)

    def chown_tree(self, root: os.PathLike[str] | str) -> None:
        if self.uid is None:
            return
        self.chown(root)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                with contextlib.suppress(FileNotFoundError):
                    os.lchown(os.path.join(dirpath, name), self.uid, self.gid or -1)


def postgres_run_as() -> RunAs:
    """PostgreSQL refuses to run as root; then use (and if needed create) a system user."""
    if os.geteuid() != 0:
        return RunAs()
    try:
        pw = pwd.getpwnam(PG_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        run([useradd, "-r", "-M", "-s", "/usr/sbin/nologin", PG_USER], check=True,
            capture_output=True)
        pw = pwd.getpwnam(PG_USER)
    return RunAs(pw.pw_uid, pw.pw_gid)


def make_traversable(path: os.PathLike[str] | str) -> None:
    """Give others search (x) permission on ``path`` and its parents where it is missing.

    Only needed as root: the ``mercato_pg`` user must reach the binaries and PGDATA. Search
    without read lets it open known paths but not list directories.
    """
    p = os.path.abspath(path)
    while True:
        with contextlib.suppress(OSError):
            st = os.stat(p)
            if not st.st_mode & 0o001:
                os.chmod(p, st.st_mode | 0o001)
        parent = os.path.dirname(p)
        if parent == p:
            return
        p = parent


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """subprocess.run for our own argv lists (absolute binaries, never a shell)."""
    return subprocess.run(argv, **kwargs)  # noqa: S603 - see docstring


def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    return subprocess.Popen(argv, **kwargs)  # noqa: S603 - our own argv, never a shell


def go_engine_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """What the Go engines the runtime starts (NATS, Prometheus) add to their environment:
    one P (``GOMAXPROCS=1``) unless the user set ``GOMAXPROCS``.

    On a small machine shared with a dozen busy processes, Go's scheduler with a P per core
    spent more of NATS's CPU parking and waking its idle threads (``runtime.usleep``,
    futexes) than the second P ever gave back: one P measured 0.85x NATS's CPU per order at
    12 orders/s, time to terminal unchanged (ADR 0050). At 30 orders/s NATS needs about a
    quarter of one core."""
    return {} if environ.get("GOMAXPROCS") else {"GOMAXPROCS": "1"}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is dead for our purposes.
    with contextlib.suppress(OSError, IndexError):
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    return True


def wait_pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def terminate(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM,
              timeout: float = 10.0) -> int | None:
    """Signal a child's process group, wait, and SIGKILL the group if it lingers."""
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(5)
