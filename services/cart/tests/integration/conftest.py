"""The cart on a fresh, migrated embedded-PostgreSQL database, without NATS."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cart.app import MIGRATIONS_DIR
from chassis.db import Database
from chassis.migrations import upgrade_to_head


@pytest.fixture
def database_url(fresh_database: str) -> str:
    # Sync on purpose: Alembic runs its own event loop.
    upgrade_to_head(MIGRATIONS_DIR, fresh_database)
    return fresh_database


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=20)
    try:
        yield database
    finally:
        await database.dispose()


# pytest's importlib mode leaves this folder off sys.path; the helper module is named after
# the service so it cannot shadow another service's.
sys.path.insert(0, str(Path(__file__).parent))
