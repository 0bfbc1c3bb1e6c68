"""Test helpers services share: a signing key, a token minter and a static key source;
a stand-in upstream server; a clock the test sets.

Tests of a service's API need valid and invalid tokens without a running identity service,
and answers from the services it calls without running those.
"""

from __future__ import annotations

import abc
import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from chassis.auth import KeySource


class LogRecorder:
    """Stands in for a module's structlog logger (``monkeypatch.setattr(module, "log",
    recorder)``): what it was asked to log, as (level, event, fields). Independent of how
    structlog is configured, which the tests before may have changed and cached."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        def record(event: str, **fields: Any) -> None:
            self.lines.append((level, event, fields))
        return record

    def events(self) -> list[tuple[str, str]]:
        """(level, event) of each line, in order."""
        return [(level, event) for level, event, _ in self.lines]


class ManualClock:
    """A clock that stands still until the test moves ``now`` (a saga engine's or a
    handler's ``clock``)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class StaticKeys:
    """A KeySource over a fixed set of public keys."""

    def __init__(self, keys: dict[str, Any]) -> None:
        self._keys = keys

    async def key_for(self, kid: str) -> Any | None:
        return self._keys.get(kid)


class TokenMinter:
    def __init__(self, *, issuer: str = "mercato-identity", audience: str = "mercato",
                 kid: str = "test-key") -> None:
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = kid
        self.issuer = issuer
        self.audience = audience

    def key_source(self) -> Callable[[object], KeySource]:
        keys = StaticKeys({self.kid: self.private_key.public_key()})
        return lambda _ctx: keys

    def token(self, subject: str | None = None, roles: list[str] | None = None,
              ttl_s: int = 3600, **overrides: Any) -> str:
        # An hour: test modules mint their tokens at import, and a slow run (a busy 2-core
        # machine) reached tests more than 5 minutes after collection with expired ones.
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "aud": self.audience,
                                  "sub": subject or str(uuid.uuid4()),
                                  "roles": roles if roles is not None else ["customer"],
                                  "iat": now, "exp": now + ttl_s}
        claims.update(overrides)
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid})

    def auth(self, roles: list[str] | None = None, **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(roles=roles, **kw)}"}


def schema_drift(database_url: str, metadata: Any) -> list[Any]:
    """Differences between a migrated database and the tables in code (empty: no drift).

    Every service keeps its Alembic migrations and its table definitions side by side; this
    is the one check that they describe the same schema.
    """
    import asyncio

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import pool
    from sqlalchemy.ext.asyncio import create_async_engine

    async def diff() -> list[Any]:
        engine = create_async_engine(database_url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), metadata))
        finally:
            await engine.dispose()

    return asyncio.run(diff())


@dataclass
class ThreadedUpstream(abc.ABC):
    """An aiohttp app on 127.0.0.1 (a free port) in its own thread and event loop: the app
    under test runs in the TestClient's loop while the test itself blocks, so a stand-in
    upstream cannot share either. Subclasses add their routes."""

    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @abc.abstractmethod
    def add_routes(self, app: web.Application) -> None:
        """Route the upstream's endpoints to this object's handlers."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        self._ready.wait(5)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        self.add_routes(app)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(runner.cleanup())
            self._loop.close()


PROBLEM_JSON = "application/problem+json"


def assert_problem(resp: Any, status: int) -> dict[str, Any]:
    """``resp`` is an RFC 9457 problem with ``status``; its document, for further checks."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM_JSON
    doc: dict[str, Any] = resp.json()
    assert doc["status"] == status
    return doc


def service_database_fixtures(migrations_dir: Path, *, pool_size: int = 20) -> tuple[Any, Any]:
    """A service's integration fixtures ``database_url`` (a fresh database, migrated to
    head) and ``db`` (a Database over it). Bind both in the service's conftest:
    ``database_url, db = service_database_fixtures(MIGRATIONS_DIR)``. They stand on the
    ``fresh_database`` fixture of the workspace's infra plugin."""
    import pytest

    from chassis.db import Database
    from chassis.migrations import upgrade_to_head

    @pytest.fixture(name="database_url")
    def database_url(fresh_database: str) -> str:
        # Sync on purpose: Alembic runs its own event loop.
        upgrade_to_head(migrations_dir, fresh_database)
        return fresh_database

    @pytest.fixture(name="db")
    async def db(database_url: str) -> AsyncIterator[Database]:
        database = Database(database_url, pool_size=pool_size)
        try:
            yield database
        finally:
            await database.dispose()

    return database_url, db


def metadata_database_fixture(metadata: Any, *statements: str) -> Any:
    """A ``db`` fixture: a Database over a fresh database holding ``metadata``'s tables (and
    whatever ``statements`` create), for tests of the chassis's own tables without a
    service's migrations. Bind it in the test module: ``db = metadata_database_fixture(md)``."""
    import pytest
    from sqlalchemy import text

    from chassis.db import Database

    @pytest.fixture(name="db")
    async def db(fresh_database: str) -> AsyncIterator[Database]:
        database = Database(fresh_database)
        try:
            async with database.engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
                for statement in statements:
                    await conn.execute(text(statement))
            yield database
        finally:
            await database.dispose()

    return db


async def backend_pid(db: Any) -> int:
    """The PostgreSQL backend a Database's pooled connection is (with ``pool_size=1``, the
    only one): whose statements a test reads from the server's log."""
    return int((await db.fetch_once("SELECT pg_backend_pid() AS pid"))[0]["pid"])
