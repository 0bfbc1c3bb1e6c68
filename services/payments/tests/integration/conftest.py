"""Payments on a fresh, migrated embedded-PostgreSQL database, without NATS, talking to a real
simulated provider process (``python -m payments.provider``) on a free port."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from chassis.db import Database
from chassis.migrations import upgrade_to_head
from payments.app import MIGRATIONS_DIR

# pytest's importlib mode leaves this folder off sys.path; the helper module is named after
# the service so it cannot shadow another service's.
sys.path.insert(0, str(Path(__file__).parent))

from payments_kit import ProviderProcess


@pytest.fixture
def database_url(fresh_database: str) -> str:
    # Sync on purpose: Alembic runs its own event loop.
    upgrade_to_head(MIGRATIONS_DIR, fresh_database)
    return fresh_database


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=10)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture(scope="session")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderProcess]:
    """One provider for the session; tests use fresh payment ids, so they never meet."""
    process = ProviderProcess(tmp_path_factory.mktemp("provider"))
    process.start()
    try:
        yield process
    finally:
        process.stop()
