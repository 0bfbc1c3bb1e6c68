"""An identity app on a fresh, migrated embedded-PostgreSQL database, without NATS."""

from __future__ import annotations

import asyncio
import io
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from chassis.migrations import upgrade_to_head
from fastapi.testclient import TestClient
from identity.app import MIGRATIONS_DIR, create_app
from identity.entrypoints.cli import main
from identity.settings import IdentitySettings

# argon2's cheapest legal cost: these tests are about the flows, not the hash strength.
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost_kib": 8, "argon2_parallelism": 1}
PASSWORD = "correct horse battery"


def settings_for(database_url: str, **overrides: Any) -> IdentitySettings:
    from identity_http import CALLER_KEYS  # a sibling module: importable once tests load

    values: dict[str, Any] = {"database_url": database_url, "nats_url": "",
                              "register_instance": False, **FAST_ARGON2,
                              # signing with a new key at once keeps rotation tests direct;
                              # the lead itself is tested on the key ring
                              "signing_key_publish_lead_s": 0.0,
                              "registry_trusted_keys": {name: public for name, (_, public)
                                                        in CALLER_KEYS.items()},
                              **overrides}
    return IdentitySettings(**values)


def sql_runner(database_url: str) -> Any:
    """Runs one SQL statement on its own connection and returns the first value (counts)."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")

    def run(statement: str) -> Any:
        async def fetch() -> Any:
            conn = await asyncpg.connect(dsn)
            try:
                return await conn.fetchval(statement)
            finally:
                await conn.close()

        return asyncio.run(fetch())

    return run


@pytest.fixture
def database_url(fresh_database: str) -> str:
    upgrade_to_head(MIGRATIONS_DIR, fresh_database)
    return fresh_database


@pytest.fixture
def make_settings(database_url: str) -> Any:
    return lambda **overrides: settings_for(database_url, **overrides)


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(database_url)),
                    raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def sql(database_url: str) -> Any:
    return sql_runner(database_url)


@dataclass
class SharedIdentity:
    client: TestClient
    sql: Any
    user_token: str


@pytest.fixture(scope="module")
def shared(pg_server: Any) -> Iterator[SharedIdentity]:
    """One app and database for a module of tests that must each write nothing (they
    check it), with ann@example.com registered and logged in."""
    name = f"t_identity_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    try:
        upgrade_to_head(MIGRATIONS_DIR, url)
        with TestClient(create_app(settings_for(url)), raise_server_exceptions=False) as c:
            created = c.post("/api/identity/register", json={
                "email": "ann@example.com", "password": PASSWORD, "name": "Ann"})
            assert created.status_code == 201
            token = c.post("/api/identity/token", data={
                "grant_type": "password", "username": "ann@example.com",
                "password": PASSWORD}).json()["access_token"]
            yield SharedIdentity(client=c, sql=sql_runner(url), user_token=token)
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def make_admin(database_url: str, monkeypatch: pytest.MonkeyPatch,
               capsys: pytest.CaptureFixture[str]) -> Any:
    """Creates an admin the documented way: ``python -m identity create-admin``."""

    def make(email: str, password: str = PASSWORD) -> str:
        monkeypatch.setenv("IDENTITY_DATABASE_URL", database_url)
        for name, value in FAST_ARGON2.items():
            monkeypatch.setenv(f"IDENTITY_{name.upper()}", str(value))
        monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
        assert main(["create-admin", email, "--password-stdin"]) == 0
        return capsys.readouterr().out

    return make


# pytest's importlib mode leaves this folder off sys.path; the helper module is named after
# the service so it cannot shadow another service's.
sys.path.insert(0, str(Path(__file__).parent))
