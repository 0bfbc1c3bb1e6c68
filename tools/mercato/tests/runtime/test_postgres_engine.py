"""The embedded PostgreSQL engine: init, restart, per-service roles, secrets on disk."""

from __future__ import annotations

import stat

import asyncpg
import pytest
from mercato.runtime.paths import Home, free_port
from mercato.runtime.postgres import Postgres

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture
def pg(home: Home):
    engine = Postgres(home, home.ports().postgres)
    yield engine
    engine.stop()


async def _fetch(url: str, sql: str):
    conn = await asyncpg.connect(_plain(url))
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_restart_keeps_data_and_service_roles_are_isolated(pg: Postgres, home: Home):
    pg.start()
    catalog = pg.ensure_service_database("catalog")
    identity = pg.ensure_service_database("identity")
    assert catalog.startswith("postgresql+asyncpg://catalog:")
    conn = await asyncpg.connect(_plain(catalog))
    await conn.execute("CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (7)")
    await conn.close()

    pg.stop()
    assert not pg.is_ready()
    pg.start()
    # Idempotent: a second ensure keeps the password (the URL is unchanged) and the data.
    assert pg.ensure_service_database("catalog") == catalog
    assert await _fetch(catalog, "SELECT id FROM items") == 7

    # identity's role may not even connect to catalog's database.
    other = identity.rsplit("/", 1)[0] + "/catalog"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _fetch(other, "SELECT 1")
    # A wrong password is refused (scram-sha-256, no trust anywhere).
    bad = catalog.replace(catalog.split(":")[2].split("@")[0], "wrong")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await _fetch(bad, "SELECT 1")


def test_secrets_are_private(pg: Postgres, home: Home):
    pg.start()
    pg.ensure_service_database("catalog")
    assert stat.S_IMODE(home.secrets_dir.stat().st_mode) == 0o700
    for name in ("postgres.json", "db-catalog.json"):
        assert stat.S_IMODE((home.secrets_dir / name).stat().st_mode) == 0o600


def test_listens_on_loopback_tcp_only(pg: Postgres, home: Home):
    pg.start()
    conf = pg.psql("SHOW listen_addresses; SHOW unix_socket_directories; SHOW password_encryption")
    assert conf.split("\n")[:3] == ["127.0.0.1", "", "scram-sha-256"]


def test_start_fails_clearly_when_port_taken(home: Home):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        engine = Postgres(home, s.getsockname()[1])
        with pytest.raises(Exception, match="postgres exited"):
            engine.start(timeout=20)
    engine.stop()


def test_pg_ctl_stop_stops_a_server_it_did_not_start(home: Home):
    first = Postgres(home, free_port())
    first.start()
    pid = first.postmaster_pid()
    assert pid
    assert Postgres(home, first.port).pg_ctl_stop() is True
    first.proc.wait(10)
    assert not first.is_ready()


async def test_a_service_role_reaches_its_own_database_and_no_other(pg: Postgres, home: Home):
    pg.start()
    # A home from before the rule: PostgreSQL's default lets every role into postgres and
    # template1. The next `up` closes them (the supervisor's database phase), idempotently.
    pg.psql("GRANT CONNECT ON DATABASE postgres TO PUBLIC;\n"
            "GRANT CONNECT ON DATABASE template1 TO PUBLIC;\n")
    catalog = pg.ensure_service_database("catalog")
    orders = pg.ensure_service_database("orders")
    pg.close_shared_databases()
    pg.close_shared_databases()
    assert pg.ensure_service_database("catalog") == catalog
    base = catalog.rsplit("/", 1)[0]
    assert await _fetch(catalog, "SELECT current_database()") == "catalog"
    for database in ("postgres", "template1", "orders"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await _fetch(f"{base}/{database}", "SELECT 1")
    assert await _fetch(orders, "SELECT current_database()") == "orders"
    # template0 never accepts connections; password hashes are the superuser's alone.
    with pytest.raises(asyncpg.PostgresError):
        await _fetch(f"{base}/template0", "SELECT 1")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _fetch(catalog, "SELECT count(*) FROM pg_authid")
    # What PostgreSQL shows every login and cannot be revoked without breaking clients: the
    # names of databases and roles (docs/security.md). Only names: orders' data stays out of
    # reach, as its database does.
    names = await _fetch(catalog, "SELECT string_agg(datname, ',') FROM pg_database")
    assert "orders" in names.split(",")
