"""pytest plugin: embedded PostgreSQL and NATS for integration tests.

Register once (the repository's root ``conftest.py`` does)::

    pytest_plugins = ["mercato.testing.infra"]

Fixtures (engines start lazily, on first use, once per session, on free loopback ports):

``pg_server`` (session)
    ``PgServer`` with ``.host``, ``.port``, ``.superuser_dsn`` (``postgresql://...``) and
    ``.create_database()`` / ``.drop_database(name)`` for tests that need several;
    ``.statements_logged(database)`` for what the server saw of a database's statements.
``fresh_database`` (function)
    A new role + database owned by it, as a ``postgresql+asyncpg://`` URL; dropped afterwards.
``nats_url`` (session)
    ``nats://127.0.0.1:<port>`` of a JetStream-enabled nats-server. Streams and KV buckets
    persist for the whole session: use unique names per test.
``private_nats`` (function)
    ``NatsProcess``: a nats-server of the test's own, for broker outages: ``.stall()``
    (SIGSTOP: a hung broker), ``.resume()``, ``.stop()`` and ``.start()`` again (same port,
    same JetStream store).

The cluster runs with fsync off (throw-away data). Both servers die with the pytest process,
even on SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mercato.runtime.nats import Nats
from mercato.runtime.paths import Home, free_port
from mercato.runtime.postgres import Postgres, check_identifier
from mercato.runtime.proc import pid_alive

__all__ = ["NatsProcess", "PgServer", "fresh_database", "nats_url", "pg_server", "private_nats"]


@dataclass
class PgServer:
    """A running throw-away PostgreSQL cluster."""

    host: str
    port: int
    superuser_dsn: str
    _pg: Postgres

    def create_database(self, name: str | None = None) -> str:
        """New login role ``name`` owning database ``name``; returns the asyncpg URL."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        password = secrets.token_urlsafe(18)
        self._pg.create_role_and_database(name, password)
        return self._pg.url_for(name, password, name)

    def drop_database(self, name: str) -> None:
        self._pg.drop_role_and_database(name)

    def psql(self, script: str, database: str = "postgres") -> str:
        """Run SQL as the superuser; returns psql's unaligned, tuples-only output."""
        return self._pg.psql(script, database=database)

    @contextlib.contextmanager
    def statements_logged(self, database: str) -> Iterator[Callable[..., list[str]]]:
        """PostgreSQL's own record of what clients send: ``log_statement = 'all'`` for the
        connections to ``database`` opened inside the block. Yields ``logged(pid=None)``: the
        statements logged so far (of backend ``pid`` only, if given), as the server log says
        them: ``statement: BEGIN;``, ``execute <name>: UPDATE …`` (with the lines that
        follow, a statement's next lines; the log has a tab before each)."""
        self.psql(f"ALTER DATABASE {check_identifier(database)} SET log_statement = 'all'")
        log = self._pg.home.log_file("postgres")
        start = log.stat().st_size
        # An entry starts with log_line_prefix ('%m [%p] %q%u@%d ', mercato.runtime.postgres).
        entry = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+ \S+ \[(\d+)\] \S*@(\S*) (\w+):  ",
                           re.MULTILINE)

        def logged(pid: int | None = None) -> list[str]:
            with open(log, "rb") as fh:
                fh.seek(start)
                text = fh.read().decode(errors="replace")
            heads = list(entry.finditer(text))
            ends = [head.start() for head in heads[1:]] + [len(text)] * bool(heads)
            return [text[head.end():end].rstrip("\n")
                    for head, end in zip(heads, ends, strict=True)
                    if head[2] == database and head[3] == "LOG"
                    and (pid is None or int(head[1]) == pid)]

        try:
            yield logged
        finally:
            self.psql(f"ALTER DATABASE {database} RESET log_statement")


def _sweep_abandoned(prefix: str) -> None:
    """Remove scratch dirs of sessions that were SIGKILLed (their servers died with them)."""
    for old in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            owner = int((old / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if not pid_alive(owner):
            shutil.rmtree(old, ignore_errors=True)


def _scratch_dir(prefix: str) -> Path:
    # Not tmp_path_factory: its base is 0700 root-only, and as root PostgreSQL runs as
    # mercato_pg, which must be able to reach its data directory.
    _sweep_abandoned(prefix)
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    (path / "owner.pid").write_text(str(os.getpid()))
    return path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    root = _scratch_dir("mercato-pg-")
    pg = Postgres(Home(root), free_port(), durable=False)
    try:
        pg.start()
        yield PgServer(host=pg.host, port=pg.port, superuser_dsn=pg.superuser_dsn, _pg=pg)
    finally:
        with contextlib.suppress(Exception):
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_database(pg_server: PgServer) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = pg_server.create_database(name)
    try:
        yield url
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    root = _scratch_dir("mercato-nats-")
    server = Nats(root, free_port())
    try:
        server.start()
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class NatsProcess:
    """A nats-server a test may stall, stop and start again."""

    _server: Nats

    @property
    def url(self) -> str:
        return self._server.url

    def _signal(self, sig: signal.Signals) -> None:
        assert self._server.proc is not None, "the server is not running"
        os.kill(self._server.proc.pid, sig)

    def stall(self) -> None:
        """SIGSTOP: connections stay open, nothing answers (a hung broker). Returns once every
        thread of the server has stopped: one still running could answer one more request."""
        self._signal(signal.SIGSTOP)
        assert self._server.proc is not None
        tasks = Path(f"/proc/{self._server.proc.pid}/task")
        deadline = time.monotonic() + 5
        while not all(_stopped(t) for t in tasks.iterdir()):
            assert time.monotonic() < deadline, "nats-server did not stop"
            time.sleep(0.005)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def stop(self) -> None:
        self._server.stop()

    def start(self) -> None:
        self._server.start()


def _stopped(task: Path) -> bool:
    with contextlib.suppress(OSError):  # a thread that ended meanwhile
        return (task / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("T", "t")
    return True


@pytest.fixture
def private_nats() -> Iterator[NatsProcess]:
    root = _scratch_dir("mercato-nats-")
    server = Nats(root, free_port())
    try:
        server.start()
        yield NatsProcess(server)
    finally:
        if server.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.proc.pid, signal.SIGCONT)  # a stalled server cannot stop
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def serving(argv: list[str], env: dict[str, str], ready_url: str,
            timeout: float = 30) -> Iterator[subprocess.Popen[bytes]]:
    """A server process for a test: started, polled at ``ready_url`` until it answers (or
    it exits: the test fails at once, not at the timeout), terminated after."""
    if not ready_url.startswith("http://127.0.0.1:"):
        raise ValueError(f"test servers answer on loopback http only, not {ready_url}")
    # The tests' own commands (the repo's modules), never outside input.
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,  # noqa: S603
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(ready_url, timeout=1):  # noqa: S310 (loopback http)
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{' '.join(argv)} did not answer {ready_url}") from None
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
