"""Helpers for the e2e tests: drive the real `mercato` CLI and talk to the platform's edge."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psutil
from mercato.runtime.paths import free_port

MERCATO = str(Path(sys.executable).with_name("mercato"))
# A cheap argon2id for a test platform's identity (the supervisor passes its environment
# on): the concurrency tests register and log in 200 customers, which at the production
# cost (64 MiB, t=3, p=4: ~0.3 s a hash here) took over 3 minutes on 2 cores.
E2E_ARGON2 = {"IDENTITY_ARGON2_TIME_COST": "1", "IDENTITY_ARGON2_MEMORY_COST_KIB": "8192",
              "IDENTITY_ARGON2_PARALLELISM": "1"}


def mercato(home: Path, *args: str, timeout: float = 120, input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([MERCATO, *args, "--home", str(home)], capture_output=True,
                            text=True, timeout=timeout, input=input, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"mercato {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def processes_of(home: Path) -> list[psutil.Process]:
    """Every live process started for this home (the runtime marks their environment)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if str(home) in cmdline or proc.environ().get("MERCATO_RUNTIME_HOME") == str(home):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


_next_address = itertools.count(1)
_address_lock = threading.Lock()


def new_client_address() -> str:
    """A loopback address no other client of this test session used: 127.1.x.y. Linux
    routes all of 127.0.0.0/8 on lo, and the edge limits rates per client address, so each
    simulated customer gets its own buckets, as real customers on their own devices do."""
    with _address_lock:
        n = next(_next_address)
    return f"127.1.{n // 250 % 250}.{n % 250 + 2}"


@dataclass
class Platform:
    home: Path
    base_url: str

    def state(self) -> dict[str, Any]:
        return json.loads((self.home / "run" / "state.json").read_text())

    def client(self, address: str | None = None) -> httpx.Client:
        """A client of the edge connecting from ``address`` (a fresh one by default)."""
        transport = httpx.HTTPTransport(local_address=address or new_client_address())
        return httpx.Client(base_url=self.base_url, timeout=10, transport=transport)

    def access_log(self) -> list[dict[str, Any]]:
        """The edge's access log lines (Envoy flushes the file every second)."""
        path = self.home / "logs" / "envoy-access.log"
        lines = []
        for raw in path.read_text().splitlines() if path.exists() else ():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue  # a line Envoy is still writing
        return lines

    def served_by(self, request_ids: list[str], timeout: float = 15) -> dict[str, str]:
        """Which instance served each request, from the access log: the edge keeps instance
        names out of its responses."""
        wanted = set(request_ids)

        def found() -> dict[str, str] | None:
            seen = {e["request_id"]: e["upstream_instance"] for e in self.access_log()
                    if e.get("request_id") in wanted}
            return seen if set(seen) == wanted else None

        return wait_until(found, timeout, "the requests in the edge's access log",
                          interval=0.1)  # type: ignore[no-any-return]

    def edge_unhealthy(self) -> dict[str, list[str]]:
        """Each service's instances the edge holds out of rotation now (Envoy's admin
        ``/clusters``): its health checks, not the registry, say when one is back."""
        from mercato.gateway.envoy import admin_get, parse_clusters
        from mercato.runtime.paths import Home

        status, text = asyncio.run(admin_get(Home(self.home).envoy_admin_socket, "/clusters"))
        assert status == 200, text
        services = {p["service"] for p in self.state()["processes"].values()
                    if p.get("kind") == "service"}
        out: dict[str, list[str]] = {}
        for host in parse_clusters(text):
            if host.cluster in services and not host.healthy:
                out.setdefault(host.cluster, []).append(f"{host.address} {host.health_flags}")
        return out

    def wait_settled(self, timeout: float = 60, hold_s: float = 5.0) -> None:
        """Every service ready when asked straight, and the edge holding every instance
        healthy for ``hold_s`` on end. The edge's view alone is not enough right after an
        outage: it still holds an instance healthy until its next check (every 2 s) fails
        twice, so "none unhealthy" can be read just before the edge takes one out."""
        services = {name: p["port"] for name, p in self.state()["processes"].items()
                    if p.get("kind") == "service" and p.get("port")}
        settled_since: list[float] = []

        def settled() -> bool:
            with httpx.Client(timeout=5) as raw:
                ready = all(raw.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200
                            for port in services.values())
            if not ready or self.edge_unhealthy():
                settled_since.clear()
                return False
            if not settled_since:
                settled_since.append(time.monotonic())
            return time.monotonic() - settled_since[0] >= hold_s

        wait_until(settled, timeout, f"every service ready and healthy at the edge for "
                   f"{hold_s:g} s", interval=0.25)

    def register(self, client: httpx.Client, password: str = "correct horse battery") -> dict:
        email = f"user-{uuid.uuid4().hex[:12]}@example.com"
        resp = client.post("/api/identity/register",
                           json={"email": email, "password": password, "name": "Test User"})
        assert resp.status_code == 201, resp.text
        return {**resp.json(), "password": password}

    def login(self, client: httpx.Client, email: str, password: str) -> dict:
        resp = client.post("/api/identity/token", data={
            "grant_type": "password", "username": email, "password": password})
        assert resp.status_code == 200, resp.text
        return resp.json()

    def admin_token(self, client: httpx.Client) -> str:
        email = f"admin-{uuid.uuid4().hex[:12]}@example.com"
        password = "admin password 1"
        mercato(self.home, "admin", "create-admin", email, "--password", password)
        return self.login(client, email, password)["access_token"]


def scratch_home(prefix: str) -> Path:
    """A home for a test platform. Not under pytest's own temp root: every pytest session of
    the machine makes that 0700 again, and PostgreSQL runs as mercato_pg when started by
    root: a second session on the machine would take its data directory away mid-run."""
    return Path(tempfile.mkdtemp(prefix=prefix))


@contextmanager
def running_platform(home: Path, *up_args: str) -> Iterator[Platform]:
    """``mercato up --detach`` in ``home`` on a free port, ready through the edge; ``mercato
    down`` after, leaving no process behind and the logs (not the engines' data) in place."""
    os.environ.pop("MERCATO_HOME", None)
    saved = {name: os.environ.get(name) for name in E2E_ARGON2}
    os.environ.update({name: saved[name] or value for name, value in E2E_ARGON2.items()})
    try:
        for attempt in range(3):
            port = free_port()
            started = mercato(home, "up", "--detach", "--port", str(port), *up_args,
                              timeout=300, check=False)
            # Another program (another test run on this machine) may take the free port
            # between our look and the edge's bind.
            if started.returncode == 0 or "is in use" not in started.stdout + started.stderr \
                    or attempt == 2:
                break
        if started.returncode != 0:
            raise AssertionError(f"mercato up failed ({started.returncode}):\n"
                                 f"{started.stdout}\n{started.stderr}")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value
    p = Platform(home=home, base_url=f"http://127.0.0.1:{port}")
    try:
        with p.client() as c:
            wait_until(lambda: c.get("/api/catalog/products").status_code == 200, 60,
                       "the catalog through the edge")
            wait_until(lambda: c.get("/.well-known/jwks.json").status_code == 200, 60,
                       "the JWKS through the edge")
            # 503 until the gateway has handed Envoy identity's keys; then a missing token
            # is a plain 401.
            wait_until(lambda: c.get("/api/identity/me").status_code == 401, 60,
                       "the edge to check tokens")
        yield p
    finally:
        mercato(home, "down", timeout=120, check=False)
        # `mercato down` must leave no process of this home behind.
        wait_until(lambda: not processes_of(home), 20, "no mercato process left after down")
        # The engines' data goes (hundreds of MB); the logs stay for whoever reads a failure.
        for data in ("pg", "nats"):
            shutil.rmtree(home / data, ignore_errors=True)


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# -- what a platform keeps: streams, logs, databases (for scans such as the card-number one) --

async def nats_connect(platform: Platform) -> Any:
    """A NATS connection to the platform's broker: every test that reads streams connects
    here, so a change of how one connects (credentials) is made once."""
    import nats
    from mercato.runtime.broker import connect_options
    from mercato.runtime.paths import Home

    # As the operator's CLI identity: the broker refuses anonymous connections.
    return await nats.connect(f"nats://127.0.0.1:{platform.state()['ports']['nats']}",
                              **connect_options(Home(platform.home)))


def stream_messages(platform: Platform) -> dict[str, list[bytes]]:
    """Every message every JetStream stream holds (dead letters and the registry included),
    headers and body, by stream."""
    from nats.js.errors import NotFoundError

    async def read() -> dict[str, list[bytes]]:
        nc = await nats_connect(platform)
        try:
            js = nc.jetstream()
            found: dict[str, list[bytes]] = {}
            for info in await js.streams_info():
                name, state = info.config.name, info.state

                async def one(seq: int, stream: str = name) -> bytes | None:
                    try:
                        msg = await js.get_msg(stream, seq)
                    except NotFoundError:  # deleted (a work queue's acked message)
                        return None
                    return json.dumps(msg.headers or {}).encode() + b"\n" + (msg.data or b"")

                messages: list[bytes] = []
                if state.messages:
                    for start in range(state.first_seq, state.last_seq + 1, 200):
                        chunk = range(start, min(start + 200, state.last_seq + 1))
                        messages += [m for m in await asyncio.gather(*map(one, chunk)) if m]
                found[name] = messages
            return found
        finally:
            await nc.close()

    return asyncio.run(read())


class Wiretap:
    """Every message published on the platform's broker while it runs, as headers and body:
    a plain NATS subscription to every subject, so it sees what travelled (a work queue's
    command, deleted once handled, included), not only what the streams still hold. Used as
    ``with Wiretap(platform) as tap: ...`` then ``tap.messages``."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.messages: list[bytes] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Wiretap:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise AssertionError(f"the wiretap did not start: {self._error!r}")
        return self

    def __exit__(self, *_: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        async def tap() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            nc = await nats_connect(self.platform)
            try:
                async def keep(msg: Any) -> None:
                    self.messages.append(f"{msg.subject} {json.dumps(msg.headers or {})}\n"
                                         .encode() + (msg.data or b""))

                await nc.subscribe(">", cb=keep, pending_msgs_limit=1_000_000,
                                   pending_bytes_limit=1 << 30)
                await nc.flush()
                self._ready.set()
                await self._stop.wait()
                await nc.flush()
            finally:
                await nc.close()

        try:
            asyncio.run(tap())
        except BaseException as exc:  # reported by __enter__
            self._error = exc
            self._ready.set()


def log_files(platform: Platform) -> dict[str, str]:
    """Every file under the home's logs/, as text."""
    logs = platform.home / "logs"
    return {str(p.relative_to(logs)): p.read_text(errors="replace")
            for p in sorted(logs.rglob("*")) if p.is_file()}


def superuser_connect(platform: Platform, database: str) -> Any:
    """An asyncpg connection (a coroutine) to one of the platform's databases as the
    PostgreSQL superuser, with the password the home keeps."""
    import asyncpg

    secrets = json.loads((platform.home / "secrets" / "postgres.json").read_text())
    return asyncpg.connect(host="127.0.0.1", port=platform.state()["ports"]["postgres"],
                           user=secrets["user"], password=secrets["password"],
                           database=database)


def database_dump(platform: Platform) -> dict[str, list[str]]:
    """Every row of every table of every database (each service's, and any other), as text,
    by "database.schema.table"."""
    async def dump() -> dict[str, list[str]]:
        conn = await superuser_connect(platform, "postgres")
        try:
            names = [r["datname"] for r in await conn.fetch(
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate")]
        finally:
            await conn.close()
        found: dict[str, list[str]] = {}
        for database in names:
            conn = await superuser_connect(platform, database)
            try:
                tables = await conn.fetch(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN "
                    "('pg_catalog', 'information_schema')")
                for t in tables:
                    schema, table = t["table_schema"], t["table_name"]
                    rows = await conn.fetch(f'SELECT t::text AS row FROM "{schema}"."{table}" t')
                    found[f"{database}.{schema}.{table}"] = [r["row"] for r in rows]
            finally:
                await conn.close()
        return found

    return asyncio.run(dump())


def provider_charges(platform: Platform) -> list[dict[str, Any]]:
    """Every charge the simulated card provider has made (its own API, not the edge's)."""
    provider = next(p for n, p in platform.state()["processes"].items()
                    if n.startswith("payments-provider"))
    from mercato.runtime.paths import Home
    from mercato.runtime.services import simulator_token

    token = simulator_token(Home(platform.home), "payments-provider")
    resp = httpx.get(f"http://127.0.0.1:{provider['port']}/charges", timeout=10,
                     headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["items"])

def keep_until(step: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    """Run ``step`` until it returns something true; unlike ``wait_until``, a failure in
    ``step`` fails at once: for checks that must hold all along while waiting."""
    deadline = time.monotonic() + timeout
    while True:
        result = step()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
