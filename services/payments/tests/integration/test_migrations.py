"""The migrations build exactly the tables the code uses (no drift between the two)."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from payments.adapters.orm import metadata
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = pytest.mark.integration


def test_migrated_schema_matches_the_tables_in_code(database_url: str) -> None:
    async def diff() -> list:
        engine = create_async_engine(database_url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), metadata))
        finally:
            await engine.dispose()

    assert asyncio.run(diff()) == []
