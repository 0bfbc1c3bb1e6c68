"""The pytest plugin's own fixtures, used the way the chassis tests use them."""

from __future__ import annotations

import asyncpg
import nats
import pytest

pytestmark = pytest.mark.integration


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


_seen: list[str] = []


async def test_fresh_database_is_owned_by_its_role(fresh_database: str) -> None:
    _seen.append(fresh_database.rsplit("/", 1)[1])
    assert fresh_database.startswith("postgresql+asyncpg://")
    conn = await asyncpg.connect(_plain(fresh_database))
    try:
        await conn.execute("CREATE TABLE t (id int primary key)")
        await conn.execute("INSERT INTO t VALUES (1)")
        assert await conn.fetchval("SELECT count(*) FROM t") == 1
        assert await conn.fetchval("SELECT current_user") == await conn.fetchval(
            "SELECT current_database()")
    finally:
        await conn.close()


async def test_fresh_database_is_fresh_and_dropped_after(pg_server, fresh_database: str) -> None:
    conn = await asyncpg.connect(_plain(fresh_database))
    try:
        assert await conn.fetchval("SELECT to_regclass('public.t')") is None
    finally:
        await conn.close()
    names = pg_server.psql("SELECT datname FROM pg_database").split()
    assert fresh_database.rsplit("/", 1)[1] in names
    assert not set(_seen) & set(names), "the previous test's database was not dropped"


def test_pg_server_superuser_dsn(pg_server) -> None:
    assert pg_server.host == "127.0.0.1"
    assert pg_server.superuser_dsn.startswith("postgresql://postgres:")
    assert f":{pg_server.port}/" in pg_server.superuser_dsn


async def test_nats_url_has_jetstream(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().create_key_value(bucket="infra_plugin_test")
        await kv.put("k", b"v")
        assert (await kv.get("k")).value == b"v"
    finally:
        await nc.close()
