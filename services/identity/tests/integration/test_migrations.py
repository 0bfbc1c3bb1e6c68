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
