"""Fixtures the chassis's database tests share (each module brings its own ``db``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from chassis.db import Database


@pytest.fixture
async def one(db: Database) -> AsyncIterator[Database]:
    """A Database of one pooled connection on ``db``'s database: every call on one backend."""
    single = Database(db.engine.url.render_as_string(hide_password=False), pool_size=1)
    try:
        yield single
    finally:
        await single.dispose()
