"""The shop's migrations, run by two processes starting together."""

from __future__ import annotations

import asyncio

import pytest
from legacy.migrate import upgrade_to_head
from mercato.testing.migrations import second_start_during_first_commit
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = pytest.mark.integration


def test_a_second_process_waits_for_the_first_ones_commit_and_finds_it_done(
        fresh_database: str) -> None:
    second = second_start_during_first_commit(
        fresh_database, upgrade_to_head,
        "import sys; from legacy.migrate import upgrade_to_head; upgrade_to_head(sys.argv[1])")
    assert second.returncode == 0, second.stderr[-1500:]

    async def versions() -> list[str]:
        engine = create_async_engine(fresh_database)
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(text(
                    "SELECT version_num FROM alembic_version"))).scalars())
        finally:
            await engine.dispose()

    assert len(asyncio.run(versions())) == 1
