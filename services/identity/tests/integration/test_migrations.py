"""The hand-written migration and the ORM models describe the same schema."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from chassis.migrations import alembic_config, upgrade_to_head
from identity.adapters.orm import metadata
from identity.app import MIGRATIONS_DIR
from mercato.testing.migrations import second_start_during_first_commit
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = pytest.mark.integration


def _drift(url: str) -> list[object]:
    async def compare() -> list[object]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(lambda sync: list(compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), metadata)))
        finally:
            await engine.dispose()

    return asyncio.run(compare())


def test_migrations_match_the_models_and_downgrade_cleanly(fresh_database: str) -> None:
    upgrade_to_head(MIGRATIONS_DIR, fresh_database)
    assert _drift(fresh_database) == []
    command.downgrade(alembic_config(MIGRATIONS_DIR, fresh_database), "base")
    upgrade_to_head(MIGRATIONS_DIR, fresh_database)
    assert _drift(fresh_database) == []




def test_an_instance_starting_while_another_commits_its_migrations_waits_for_the_commit(
        fresh_database: str) -> None:
    """Two instances migrating at once: the second waits for the first one's commit and
    finds the work done (it used to fail and exit: see mercato.testing.migrations)."""
    second = second_start_during_first_commit(
        fresh_database, lambda url: upgrade_to_head(MIGRATIONS_DIR, url),
        "import sys; from chassis.migrations import upgrade_to_head; "
        "from identity.app import MIGRATIONS_DIR; upgrade_to_head(MIGRATIONS_DIR, sys.argv[1])")
    assert second.returncode == 0, second.stderr[-1500:]
    assert _drift(fresh_database) == []
